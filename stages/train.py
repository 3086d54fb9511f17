"""Stage ``train``: Bayesian search (scikit-optimize) over LightGBM hyperparameters and
feature sets, refit of the best configuration, one evaluation on the test part.

For each point the optimizer asks for (a hyperparameter set and a feature set), LightGBM runs
k-fold cross-validation on the training part with early stopping on the held-out folds; the
test part is never seen before the final refit. Outputs: the booster (LightGBM's text format),
a summary the package stage reads, metrics, and plot data (predictions, importance, search).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages import cli
from stages.errors import StageError
from stages.features import FeatureSpec, inverse_target, transform_target
from stages.files import write_csv, write_json, write_with
from stages.params import CategoricalDim, IntegerDim, Params, SearchParams, TrainParams, load_params
from stages.tracking import stage_run

log = logging.getLogger(__name__)

FEATURE_SET = "feature_set"


@dataclass(frozen=True)
class Trial:
    """One evaluated point of the search."""

    number: int
    point: dict[str, Any]
    score: float
    score_std: float
    best_iteration: int
    seconds: float


# ---- configuration -> library objects ------------------------------------------------------


def thread_count(requested: int) -> int:
    """LightGBM threads: as requested, or one per usable core (its own default oversubscribes)."""
    if requested:
        return requested
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def skopt_space(search: SearchParams) -> list:
    """scikit-optimize dimensions from the typed search space, in params order."""
    from skopt.space import Categorical, Integer, Real

    dims = []
    for name, dim in search.space.items():
        if isinstance(dim, CategoricalDim):
            dims.append(Categorical(dim.categories, name=name))
        elif isinstance(dim, IntegerDim):
            dims.append(Integer(dim.low, dim.high, prior=dim.prior, name=name))
        else:
            dims.append(Real(dim.low, dim.high, prior=dim.prior, name=name))
    return dims


def lgb_params(point: dict[str, Any], train: TrainParams, seed: int, threads: int) -> dict:
    """LightGBM parameters for one point of the search space (feature set excluded)."""
    hyper = {k: v for k, v in point.items() if k != FEATURE_SET}
    return {
        "objective": train.objective,
        "metric": train.search.metric,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
        "feature_pre_filter": False,
        **train.fixed,
        **hyper,
    }


def feature_columns(
    train: TrainParams, point: dict[str, Any], available: Sequence[str]
) -> list[str]:
    """The columns of the point's feature set; an unknown column raises ``StageError``."""
    name = point.get(FEATURE_SET) or next(iter(train.feature_sets))
    columns = train.feature_sets[name]
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise StageError(
            f"train.feature_sets.{name} names columns the features do not have: {unknown} "
            f"(available: {list(available)})"
        )
    return columns


def to_native(value: Any) -> Any:
    """numpy scalars (as skopt returns them) to plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


# ---- target and metrics ------------------------------------------------------------------


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


# ---- search ------------------------------------------------------------------------------


class CrossValidator:
    """Cross-validates points on fixed folds, building each feature set's Dataset once."""

    def __init__(
        self, frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, threads: int
    ) -> None:
        from sklearn.model_selection import KFold

        self.frame, self.y, self.train, self.seed, self.threads = frame, y, train, seed, threads
        self.folds = list(
            KFold(train.search.cv_folds, shuffle=True, random_state=seed).split(frame)
        )
        self._datasets: dict[tuple[str, ...], Any] = {}

    def dataset(self, columns: list[str]) -> Any:
        import lightgbm as lgb

        key = tuple(columns)
        if key not in self._datasets:
            self._datasets[key] = lgb.Dataset(
                self.frame[columns],
                label=self.y,
                free_raw_data=False,
                params={"feature_pre_filter": False, "verbosity": -1, "num_threads": self.threads},
            )
        return self._datasets[key]

    def evaluate(self, point: dict[str, Any]) -> tuple[float, float, int, Any]:
        """CV mean and std of the metric, the best iteration, and the fold boosters."""
        import lightgbm as lgb

        search = self.train.search
        columns = feature_columns(self.train, point, self.frame.columns)
        result = lgb.cv(
            lgb_params(point, self.train, self.seed, self.threads),
            self.dataset(columns),
            num_boost_round=search.max_rounds,
            folds=self.folds,
            callbacks=[lgb.early_stopping(search.early_stopping_rounds, verbose=False)],
            return_cvbooster=True,
        )
        mean = result[f"valid {search.metric}-mean"]
        std = result[f"valid {search.metric}-stdv"]
        return float(mean[-1]), float(std[-1]), len(mean), result["cvbooster"]

    def out_of_fold(self, point: dict[str, Any], cvbooster: Any, best_iteration: int) -> np.ndarray:
        """Predictions for every training row from the fold model that did not see it."""
        columns = feature_columns(self.train, point, self.frame.columns)
        predictions = np.empty(len(self.frame))
        for (_, held_out), booster in zip(self.folds, cvbooster.boosters, strict=True):
            predictions[held_out] = booster.predict(
                self.frame.iloc[held_out][columns],
                num_iteration=best_iteration,
                num_threads=self.threads,
            )
        return predictions


def run_search(cv: CrossValidator, train: TrainParams, seed: int) -> tuple[list[Trial], Any]:
    """The ask/tell loop; returns every trial and the fold boosters of the best one."""
    from skopt import Optimizer

    search = train.search
    dims = skopt_space(search)
    optimizer = Optimizer(
        dims,
        base_estimator="GP",
        n_initial_points=min(search.n_initial_points, search.n_calls),
        acq_func=search.acq_func,
        random_state=seed,
    )
    trials: list[Trial] = []
    best_boosters = None
    for number in range(search.n_calls):
        x = optimizer.ask()
        point = {d.name: to_native(v) for d, v in zip(dims, x, strict=True)}
        start = time.perf_counter()
        score, std, best_iteration, boosters = cv.evaluate(point)
        trial = Trial(number, point, score, std, best_iteration, time.perf_counter() - start)
        if not trials or score < min(t.score for t in trials):
            best_boosters = boosters
        trials.append(trial)
        optimizer.tell(x, score)
        log.info(
            "trial %d/%d %s=%.5f (best %.5f) rounds=%d %.1fs %s",
            number + 1,
            search.n_calls,
            search.metric,
            score,
            min(t.score for t in trials),
            best_iteration,
            trial.seconds,
            point,
        )
    return trials, best_boosters


def best_trial(trials: list[Trial]) -> Trial:
    return min(trials, key=lambda t: (t.score, t.number))


def history_frame(trials: list[Trial]) -> pd.DataFrame:
    """One row per trial, with the running best: the data of the convergence plot."""
    rows = [
        {
            "trial": t.number,
            "score": t.score,
            "score_std": t.score_std,
            "best_iteration": t.best_iteration,
            **t.point,
        }
        for t in trials
    ]
    frame = pd.DataFrame(rows)
    frame.insert(2, "best_score", frame["score"].cummin())
    return frame


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
    return parser.parse_args(argv)


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
    with stage_run(
        "train", {"train": train_cfg, "seed": params.seed, "target": target}, inputs=inputs
    ) as run:
        cv = CrossValidator(x_train, y_train, train_cfg, params.seed, threads)
        trials, boosters = run_search(cv, train_cfg, params.seed)
        best = best_trial(trials)
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
            "feature_set": best.point.get(FEATURE_SET, next(iter(train_cfg.feature_sets))),
            "features": columns,
            "spec": asdict(spec.select(columns)),
            "lightgbm_params": final_params,
            "best_trial": {k: v for k, v in asdict(best).items() if k != "seconds"},
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
        run.log_metrics(metrics)
        run.log_series(
            {"trial.score": [t.score for t in trials], "trial.seconds": [t.seconds for t in trials]}
        )
        run.log_artifact(args.plots_dir, "plots")
        run.log_artifact(args.model_dir / "summary.json")
    log.info("test: %s", {k: round(v, 4) for k, v in metrics["test"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
