"""Stage ``train``: Bayesian search (scikit-optimize) over LightGBM hyperparameters and
feature sets, refit of the best configuration, one evaluation on the test part.

For each point the optimizer asks for (a hyperparameter set and a feature set), LightGBM runs
k-fold cross-validation on the training part with early stopping on the held-out folds; the
test part is never seen before the final refit (see ``stages.search``). Every trial is an MLflow
child run of the train run. Outputs: the booster (LightGBM's text format), a summary the
package stage reads, metrics, and plot data (predictions, importance, search history).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages import cli
from stages.errors import StageError
from stages.features import FeatureSpec, inverse_target, transform_target
from stages.files import file_md5, write_csv, write_json, write_with
from stages.params import Params, load_params
from stages.search import (
    Checkpoint,
    CrossValidator,
    Trial,
    best_trial,
    checkpoint_key,
    feature_columns,
    feature_set_name,
    history_frame,
    lgb_params,
    run_search,
    thread_count,
)
from stages.tracking import StageRun, stage_run

log = logging.getLogger(__name__)

# ---- metrics ------------------------------------------------------------------------------


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and MAPE (in %) on the original target scale."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    error = predicted - actual
    total = np.sum((actual - actual.mean()) ** 2)
    nonzero = actual != 0
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan"),
        "mape": float(100 * np.mean(np.abs(error[nonzero] / actual[nonzero]))),
    }


# ---- fitting -------------------------------------------------------------------------------


def refit(frame: pd.DataFrame, y: np.ndarray, columns: list[str], params: dict, rounds: int) -> Any:
    """Train the chosen configuration on the whole training part."""
    import lightgbm as lgb

    dataset = lgb.Dataset(frame[columns], label=y, params={"verbosity": -1})
    return lgb.train(params, dataset, num_boost_round=rounds)


def importance_frame(booster: Any) -> pd.DataFrame:
    gain = booster.feature_importance(importance_type="gain")
    frame = pd.DataFrame({"feature": booster.feature_name(), "gain": gain})
    return frame.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)


# ---- stage ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--features", type=Path, required=True, help="featurize's output folder")
    parser.add_argument("--model-dir", type=Path, required=True, help="booster + summary go here")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots-dir", type=Path, required=True)
    parser.add_argument(
        "--checkpoint-dir", type=Path, required=True, help="finished trials, kept across a crash"
    )
    return parser.parse_args(argv)


def log_trial(run: StageRun, trial: Trial) -> None:
    """One MLflow child run per trial: its point, CV score, best iteration and duration."""
    run.log_child(
        f"trial {trial.number}",
        params=trial.point,
        metrics={
            "cv_score": trial.score,
            "cv_score_std": trial.score_std,
            "best_iteration": trial.best_iteration,
            "seconds": trial.seconds,
        },
        tags={"trial.number": trial.number, "trial.reused": str(trial.reused).lower()},
    )


def _load_split(folder: Path, target: str, how: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = pd.read_parquet(folder)
    if target not in frame:
        raise StageError(f"train: target column '{target}' is not in {folder}")
    actual = frame.pop(target).to_numpy(dtype=float)
    return frame, actual, transform_target(actual, how)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    params: Params = load_params(args.params)
    train_cfg, target = params.train, params.featurize.target
    threads = thread_count(train_cfg.num_threads)
    spec = FeatureSpec.from_json(args.features / "spec.json")
    x_train, y_train_raw, y_train = _load_split(
        args.features / "train.parquet", target, train_cfg.target_transform
    )
    x_test, y_test_raw, _ = _load_split(
        args.features / "test.parquet", target, train_cfg.target_transform
    )
    inputs = {"train": args.features / "train.parquet", "test": args.features / "test.parquet"}
    key = checkpoint_key(train_cfg, params.seed, file_md5(inputs["train"]))
    checkpoint = Checkpoint(args.checkpoint_dir / f"{key}.jsonl")
    if checkpoint.trials:
        log.info("resuming: %d finished trial(s) in %s", len(checkpoint.trials), checkpoint.path)
    with stage_run(
        "train", {"train": train_cfg, "seed": params.seed, "target": target}, inputs=inputs
    ) as run:
        trials = run_search(
            x_train,
            y_train,
            train_cfg,
            params.seed,
            threads,
            checkpoint,
            on_trial=lambda trial: log_trial(run, trial),
        )
        best = best_trial(trials)
        cv = CrossValidator(x_train, y_train, train_cfg, params.seed, threads)
        _, _, _, boosters = cv.evaluate(best.point)  # deterministic: the best trial again
        oof = inverse_target(
            cv.out_of_fold(best.point, boosters, best.best_iteration), train_cfg.target_transform
        )
        columns = feature_columns(train_cfg, best.point, x_train.columns)
        final_params = lgb_params(best.point, train_cfg, params.seed, threads)
        booster = refit(x_train, y_train, columns, final_params, best.best_iteration)
        predicted = inverse_target(
            booster.predict(x_test[columns], num_threads=threads), train_cfg.target_transform
        )
        metrics = {
            "cv": {
                **regression_metrics(y_train_raw, oof),
                f"search_{train_cfg.search.metric}": best.score,
            },
            "test": regression_metrics(y_test_raw, predicted),
            "best_iteration": best.best_iteration,
            "trials": len(trials),
        }
        summary = {
            "target": target,
            "target_transform": train_cfg.target_transform,
            "feature_set": feature_set_name(train_cfg, best.point),
            "features": columns,
            "spec": asdict(spec.select(columns)),
            "lightgbm_params": final_params,
            "best_trial": {k: v for k, v in asdict(best).items() if k not in ("seconds", "reused")},
            "num_threads": threads,
        }
        write_with(booster.save_model, args.model_dir / "booster.txt")
        write_json(summary, args.model_dir / "summary.json")
        write_json(metrics, args.metrics)
        write_csv(history_frame(trials), args.plots_dir / "search.csv")
        write_csv(importance_frame(booster), args.plots_dir / "importance.csv")
        write_csv(
            pd.DataFrame({"actual": y_test_raw, "predicted": predicted}),
            args.plots_dir / "predictions.csv",
        )
        run.log_params({f"best.{k}": v for k, v in best.point.items()})
        run.log_metrics({**metrics, "trials_reused": sum(t.reused for t in trials)})
        run.log_series(
            {"trial.score": [t.score for t in trials], "trial.seconds": [t.seconds for t in trials]}
        )
        run.log_artifact(args.plots_dir, "plots")
        run.log_artifact(args.model_dir / "summary.json")
    checkpoint.remove()
    log.info("test: %s", {k: round(v, 4) for k, v in metrics["test"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
