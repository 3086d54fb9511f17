"""Stage ``train``: Bayesian search (scikit-optimize) over LightGBM hyperparameters and
feature sets, refit of the best configuration, one evaluation on the test part. The task is
regression, binary or multiclass classification (``train.task``).

For each point the optimizer asks for (a hyperparameter set and a feature set), LightGBM runs
k-fold cross-validation on the training part with early stopping on the held-out folds; the
test part is never seen before the final refit (see ``stages.search``). Every trial is an MLflow
child run of the train run. Outputs: the booster (LightGBM's text format), a summary the
package stage reads, metrics, and plot data (predictions, importance, search history).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages import cli, engine
from stages.errors import StageError
from stages.features import (
    FeatureSpec,
    class_predictions,
    class_probabilities,
    inverse_target,
    transform_target,
)
from stages.files import file_md5, path_md5, write_csv, write_json, write_with
from stages.metrics import (
    classification_metrics,
    precision_recall_frame,
    regression_metrics,
    roc_frame,
    rounded,
)
from stages.params import Params, TrainParams, load_params
from stages.search import (
    BestModels,
    Checkpoint,
    ClusterTrials,
    CrossValidator,
    Trial,
    best_trial,
    checkpoint_key,
    feature_columns,
    feature_set_name,
    history_frame,
    lgb_params,
    loss,
    run_search,
    thread_count,
)
from stages.tracking import BOOSTER_TAG, StageRun, stage_run

log = logging.getLogger(__name__)

# ---- target ------------------------------------------------------------------------------


def target_classes(values: pd.Series, train: TrainParams, target: str) -> list:
    """The classes as learned from the training part, sorted, the positive class of a binary
    task last; a class's index is its label."""
    task = train.task
    distinct = pd.unique(values.dropna()).tolist()
    try:
        classes = sorted(distinct)
    except TypeError:  # mixed types: order by text
        classes = sorted(distinct, key=str)
    if len(classes) < 2 or (task == "binary" and len(classes) != 2):
        shown = classes[:10] + (["..."] if len(classes) > 10 else [])
        raise StageError(
            f"train: task '{task}' needs {'two' if task == 'binary' else 'two or more'} "
            f"classes, target '{target}' has {len(classes)}: {shown}"
        )
    if train.positive_class is not None:
        positive = [c for c in classes if str(c) == str(train.positive_class)]
        if not positive:
            raise StageError(
                f"train.positive_class '{train.positive_class}' is not a class of target "
                f"'{target}': {classes}"
            )
        classes = [c for c in classes if c != positive[0]] + positive
    return classes


def encode_labels(values: pd.Series, classes: list, part: str) -> np.ndarray:
    """Class indexes; a value the training part does not have stops the stage."""
    codes = pd.Categorical(values, categories=classes).codes
    unseen = pd.unique(values[codes < 0]).tolist()
    if unseen:
        raise StageError(
            f"train: the {part} part has target value(s) the training part has not: "
            f"{unseen[:10]} (set featurize.stratify: true to keep every class in both parts)"
        )
    return codes.astype(int)


def learned_target(
    values: pd.Series, train: TrainParams, classes: list | None, part: str
) -> tuple[np.ndarray, np.ndarray]:
    """(actual, y): the target to score against, and the target LightGBM fits."""
    if classes is not None:
        labels = encode_labels(values, classes, part)
        return labels, labels
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise StageError(
            f"train: target '{values.name}' is not numeric ({values.dtype}); for class labels "
            "set train.task to binary or multiclass"
        )
    actual = values.to_numpy(dtype=float)
    return actual, transform_target(actual, train.target_transform)


def quality(train: TrainParams, actual: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics of raw model scores against the actual target (or labels)."""
    if train.is_classification:
        return classification_metrics(actual, class_probabilities(scores))
    return regression_metrics(actual, inverse_target(scores, train.target_transform))


def plot_frames(
    train: TrainParams, values: pd.Series, labels: np.ndarray, scores: np.ndarray, classes
) -> dict[str, pd.DataFrame]:
    """Test-set plot data: predicted vs actual; for classification also ROC, precision-recall
    and the confusion matrix."""
    if not train.is_classification:
        predicted = inverse_target(scores, train.target_transform)
        return {
            "predictions.csv": pd.DataFrame({"actual": values.to_numpy(), "predicted": predicted})
        }
    output = class_predictions(scores, classes)
    predictions = output.rename(columns={"prediction": "predicted"})
    predictions.insert(0, "actual", values.to_numpy())
    probabilities = class_probabilities(scores)
    return {
        "predictions.csv": predictions,
        "confusion.csv": predictions[["actual", "predicted"]],
        "roc.csv": roc_frame(labels, probabilities),
        "precision_recall.csv": precision_recall_frame(labels, probabilities),
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


def _load_split(path: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_parquet(path)
    if target not in frame:
        raise StageError(f"train: target column '{target}' is not in {path}")
    return frame, frame.pop(target)


@dataclass
class Fitted:
    """What the search and the refit produce, whichever engine ran them."""

    trials: list[Trial]
    best: Trial
    oof: np.ndarray  # out-of-fold scores of the best point, one per training row
    booster: Any
    columns: list[str]
    lightgbm_params: dict
    test_scores: np.ndarray


def fit_in_process(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_test: pd.DataFrame,
    params: Params,
    checkpoint: Checkpoint,
    on_trial: Callable[[Trial], None],
) -> Fitted:
    """Search, out-of-fold scores, refit and test scores on in-memory frames (pandas)."""
    train_cfg, seed = params.train, params.seed
    threads = thread_count(train_cfg.num_threads)
    kept = BestModels()
    trials = run_search(x_train, y_train, train_cfg, seed, threads, checkpoint, on_trial, kept=kept)
    best = best_trial(trials)
    cv = CrossValidator(x_train, y_train, train_cfg, seed, threads)
    boosters = kept.boosters(best)
    if boosters is None:  # replayed from a checkpoint: the best trial again (deterministic)
        boosters = cv.evaluate(best.point)[3].boosters
    oof = cv.out_of_fold(best.point, boosters, best.best_iteration)
    columns = feature_columns(train_cfg, best.point, x_train.columns)
    final_params = lgb_params(best.point, train_cfg, seed, threads, cv.num_class)
    booster = refit(x_train, y_train, columns, final_params, best.best_iteration)
    test_scores = booster.predict(x_test[columns], num_threads=threads)
    return Fitted(trials, best, oof, booster, columns, final_params, test_scores)


def load_learned(
    path: str, digest: str, target: str, train: TrainParams, classes: list | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The training features and the target LightGBM fits (run by each Dask worker; ``digest``
    of the data names it in the workers' cache)."""
    del digest
    frame, values = _load_split(Path(path), target)
    return frame, learned_target(values, train, classes, "training")[1]


LEARNED = "__learned_target__"


def _with_learned(frame: pd.DataFrame, target: str, train: TrainParams, classes) -> pd.DataFrame:
    return frame.assign(**{LEARNED: learned_target(frame[target], train, classes, "training")[1]})


def refit_on_cluster(
    client: Any,
    path: Path,
    columns: list[str],
    lightgbm_params: dict,
    rounds: int,
    params: Params,
    classes: list | None,
) -> Any:
    """``refit`` with ``lightgbm.dask``: the chosen configuration trained on the partitioned
    training features, on the cluster's workers."""
    import lightgbm as lgb

    target = params.featurize.target
    # one frame for features and target, so that both keep the same partitions
    frame = engine.read_parquet(path, columns=[*columns, target]).map_partitions(
        _with_learned, target, params.train, classes
    )
    model = lgb.DaskLGBMRegressor(client=client, n_estimators=rounds, **lightgbm_params)
    model.fit(frame[columns], frame[LEARNED])
    return model.booster_


def predict_partitions(booster: Any, path: Path, columns: list[str], threads: int) -> np.ndarray:
    """Raw scores of every row of a partitioned table, partition by partition on the cluster."""
    import dask

    frame = engine.read_parquet(path, columns=columns)
    predict = dask.delayed(_predict, pure=True)
    parts = dask.compute(*[predict(booster, part, threads) for part in frame.to_delayed()])
    return np.concatenate(parts)


def _predict(booster: Any, frame: pd.DataFrame, threads: int) -> np.ndarray:
    return booster.predict(frame, num_threads=threads)


def fit_on_cluster(
    client: Any,
    inputs: dict[str, Path],
    classes: list | None,
    params: Params,
    checkpoint: Checkpoint,
    on_trial: Callable[[Trial], None],
) -> Fitted:
    """``fit_in_process`` on a Dask cluster: trials and out-of-fold scores as tasks (each
    worker loads the training features once), the refit with ``lightgbm.dask``, test scores
    per partition."""
    import pyarrow.parquet as pq

    train_cfg, seed, target = params.train, params.seed, params.featurize.target
    digest = path_md5(inputs["train"])
    loader = partial(load_learned, str(inputs["train"]), digest, target, train_cfg, classes)
    cluster = ClusterTrials(client, loader, train_cfg, seed)
    total = cluster.slots * cluster.threads
    try:
        trials = run_search(None, None, train_cfg, seed, total, checkpoint, on_trial, cluster)
        best = best_trial(trials)
        oof = cluster.out_of_fold(best)
    finally:
        cluster.release()
    available = [c for c in pq.ParquetDataset(inputs["train"]).schema.names if c != target]
    columns = feature_columns(train_cfg, best.point, available)
    num_class = len(classes) if train_cfg.task == "multiclass" else 1
    final_params = lgb_params(best.point, train_cfg, seed, cluster.threads, num_class)
    booster = refit_on_cluster(
        client, inputs["train"], columns, final_params, best.best_iteration, params, classes
    )
    test_scores = predict_partitions(booster, inputs["test"], columns, cluster.threads)
    return Fitted(trials, best, oof, booster, columns, final_params, test_scores)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    params: Params = load_params(args.params)
    inputs = {"train": args.features / "train.parquet", "test": args.features / "test.parquet"}
    logged = {"train": params.train, "seed": params.seed, "target": params.featurize.target}
    with stage_run("train", logged, inputs=inputs) as run:
        metrics, checkpoint = train_and_write(args, params, inputs, run)
    checkpoint.remove()
    log.info("test: %s", {k: round(v, 4) for k, v in metrics["test"].items()})
    return 0


def train_and_write(
    args: argparse.Namespace, params: Params, inputs: dict[str, Path], run: StageRun
) -> tuple[dict[str, Any], Checkpoint]:
    """Search, refit and score; write the model folder, metrics and plots; log them to ``run``.
    Returns the metrics and the search's checkpoint (removed once the run is recorded)."""
    train_cfg, target = params.train, params.featurize.target
    spec = FeatureSpec.from_json(args.features / "spec.json")
    on_cluster = params.engine == "dask"
    if on_cluster:  # the features stay on the cluster; only the target columns come here
        values_train = _load_target(inputs["train"], target)
        values_test = _load_target(inputs["test"], target)
    else:
        x_train, values_train = _load_split(inputs["train"], target)
        x_test, values_test = _load_split(inputs["test"], target)
    classes = (
        target_classes(values_train, train_cfg, target) if train_cfg.is_classification else None
    )
    actual_train, y_train = learned_target(values_train, train_cfg, classes, "training")
    actual_test, _ = learned_target(values_test, train_cfg, classes, "test")
    key = checkpoint_key(train_cfg, params.seed, path_md5(inputs["train"]))
    checkpoint = Checkpoint(args.checkpoint_dir / f"{key}.jsonl")
    if checkpoint.trials:
        log.info("resuming: %d finished trial(s) in %s", len(checkpoint.trials), checkpoint.path)
    with engine.dask_client(params.dask) if on_cluster else nullcontext() as client:
        on_trial = partial(log_trial, run)
        if on_cluster:
            fitted = fit_on_cluster(client, inputs, classes, params, checkpoint, on_trial)
        else:
            fitted = fit_in_process(x_train, y_train, x_test, params, checkpoint, on_trial)
        trials, best = fitted.trials, fitted.best
        metric = train_cfg.search.metric
        metrics = rounded(
            {
                "cv": {
                    **quality(train_cfg, actual_train, fitted.oof),
                    f"search_{metric}": loss(metric, best.score),
                },
                "test": quality(train_cfg, actual_test, fitted.test_scores),
                "best_iteration": best.best_iteration,
                "trials": len(trials),
            }
        )
        summary = {
            "task": train_cfg.task,
            "target": target,
            "target_transform": train_cfg.target_transform,
            "classes": classes,
            "feature_set": feature_set_name(train_cfg, best.point),
            "features": fitted.columns,
            "spec": asdict(spec.select(fitted.columns)),
            "lightgbm_params": fitted.lightgbm_params,
            "best_trial": {k: v for k, v in asdict(best).items() if k not in ("seconds", "reused")},
            "num_threads": fitted.lightgbm_params["num_threads"],
        }
        write_with(fitted.booster.save_model, args.model_dir / "booster.txt")
        write_json(summary, args.model_dir / "summary.json")
        write_json(metrics, args.metrics)
        write_csv(history_frame(trials), args.plots_dir / "search.csv")
        write_csv(importance_frame(fitted.booster), args.plots_dir / "importance.csv")
        plots = plot_frames(train_cfg, values_test, actual_test, fitted.test_scores, classes)
        for name, frame in plots.items():
            write_csv(frame, args.plots_dir / name)
        run.set_tags(
            {BOOSTER_TAG: file_md5(args.model_dir / "booster.txt"), "engine": params.engine}
        )
        run.log_params({f"best.{k}": v for k, v in best.point.items()})
        run.log_metrics({**metrics, "trials_reused": sum(t.reused for t in trials)})
        run.log_series(
            {"trial.score": [t.score for t in trials], "trial.seconds": [t.seconds for t in trials]}
        )
        run.log_artifact(args.plots_dir, "plots")
        run.log_artifact(args.model_dir / "summary.json")
    return metrics, checkpoint


def _load_target(path: Path, target: str) -> pd.Series:
    try:
        return pd.read_parquet(path, columns=[target])[target]
    except (KeyError, ValueError) as exc:  # pyarrow: "No match for FieldRef.Name(...)"
        raise StageError(f"train: target column '{target}' is not in {path}") from exc


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
