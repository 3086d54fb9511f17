"""Training: the target as LightGBM learns it, the search and refit on in-memory frames, and
what the train stage writes (metrics, model summary, plot data).

The test part is never seen before the final refit: the search scores each point by k-fold
cross-validation on the training part, with early stopping on the held-out folds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import Params, TrainParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import path_md5
from mlpipeline.data.names import IMPORTANCE, SEARCH_HISTORY, SLICES, TRAIN_FILE
from mlpipeline.features.transform import FeatureSpec, model_frame, transform_target
from mlpipeline.model.boosting import (
    AllRows,
    CrossValidator,
    feature_columns,
    feature_set_name,
    importance_frame,
    loss,
    model_params,
    refit,
    thread_count,
)
from mlpipeline.model.explain import mean_abs_contribution, worst_predictions
from mlpipeline.model.metrics import plot_frames, quality, rounded
from mlpipeline.model.search import (
    BestModels,
    Checkpoint,
    Trial,
    best_trial,
    checkpoint_key,
    history_frame,
    run_search,
    trial_runner,
    worker_plan,
)
from mlpipeline.model.slices import slice_report, slices_frame
from mlpipeline.model.warmstart import load_warm_start

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The target column of a task: its classes (classification, learned from the training
    part, sorted, the positive class of a binary task last; a class's index is its label)."""

    name: str
    train: TrainParams
    classes: list | None = None

    @classmethod
    def learn(cls, values: pd.Series, train: TrainParams, name: str) -> Target:
        classes = target_classes(values, train, name) if train.is_classification else None
        return cls(name, train, classes)

    def learned(self, values: pd.Series, part: str) -> tuple[np.ndarray, np.ndarray]:
        """(actual, y): the target to score against, and the target LightGBM fits."""
        if self.classes is not None:
            labels = encode_labels(values, self.classes, part)
            return labels, labels
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise PipelineError(
                f"train: target '{values.name}' is not numeric ({values.dtype}); for class "
                "labels set train.task to binary or multiclass"
            )
        actual = values.to_numpy(dtype=float)
        return actual, transform_target(actual, self.train.target_transform)

    @property
    def num_class(self) -> int:
        return len(self.classes) if self.train.task == "multiclass" and self.classes else 1


def target_classes(values: pd.Series, train: TrainParams, target: str) -> list:
    """The classes of the training part, sorted, the positive class of a binary task last."""
    task = train.task
    distinct = pd.unique(values.dropna()).tolist()
    try:
        classes = sorted(distinct)
    except TypeError:  # mixed types: order by text
        classes = sorted(distinct, key=str)
    if len(classes) < 2 or (task == "binary" and len(classes) != 2):
        shown = classes[:10] + (["..."] if len(classes) > 10 else [])
        raise PipelineError(
            f"train: task '{task}' needs {'two' if task == 'binary' else 'two or more'} "
            f"classes, target '{target}' has {len(classes)}: {shown}"
        )
    if train.positive_class is None:
        return classes
    positive = [c for c in classes if str(c) == str(train.positive_class)]
    if not positive:
        raise PipelineError(
            f"train.positive_class '{train.positive_class}' is not a class of target "
            f"'{target}': {classes}"
        )
    return [c for c in classes if c != positive[0]] + positive


def encode_labels(values: pd.Series, classes: list, part: str) -> np.ndarray:
    """Class indexes; a value the training part does not have stops the stage."""
    codes = pd.Categorical(values, categories=classes).codes
    unseen = pd.unique(values[codes < 0]).tolist()
    if unseen:
        raise PipelineError(
            f"train: the {part} part has target value(s) the training part has not: "
            f"{unseen[:10]} (set featurize.stratify: true to keep every class in both parts)"
        )
    return codes.astype(int)


def read_split(path: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """A featurized part: the features and the target column."""
    frame = pd.read_parquet(path)
    if target not in frame:
        raise PipelineError(f"train: target column '{target}' is not in {path}")
    return frame, frame.pop(target)


def open_checkpoint(folder: Path, params: Params, features: Path) -> Checkpoint:
    """The search's checkpoint for these train params, seed, training data and warm start
    (``train.search.warm_start``, read and checked here: ``features`` is the features folder)."""
    warm = load_warm_start(params, features)
    data = path_md5(features / TRAIN_FILE) + (f"+{warm.digest}" if warm else "")
    key = checkpoint_key(params.train, params.seed, data)
    checkpoint = Checkpoint(folder / f"{key}.jsonl", warm)
    if checkpoint.trials:
        log.info("resuming: %d finished trial(s) in %s", len(checkpoint.trials), checkpoint.path)
    return checkpoint


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
    oof_rows: np.ndarray | None = None  # the training rows ``oof`` scores (None: all of them)
    finalists: list[dict[str, Any]] = field(default_factory=list)  # scored on all rows


def fit(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_test: pd.DataFrame,
    params: Params,
    checkpoint: Checkpoint,
    on_trial: Callable[[Trial], None],
) -> Fitted:
    """Search, out-of-fold scores, refit and test scores on in-memory frames."""
    train, seed, runtime = params.train, params.seed, params.runtime
    threads = thread_count(runtime.num_threads)
    jobs, per_job = worker_plan(train.search.batch_size, runtime.search_jobs, threads)
    rows = trial_rows(y_train, train, seed)
    trial_train = first_rung(train, sampled=rows is not None)
    log_trial_shape(rows, len(y_train), trial_train.search.max_rounds)
    x_trials, y_trials = (x_train, y_train) if rows is None else (x_train.iloc[rows], y_train[rows])
    runner = trial_runner(x_trials, y_trials, trial_train, seed, jobs, per_job)
    kept = BestModels(1 if rows is None else train.search.finalists)  # the winner's fold models
    trials = run_search(runner, train.search, seed, checkpoint, on_trial, kept)
    cv = CrossValidator(x_trials, y_trials, trial_train, seed, threads)
    best, booster, finalists = (
        (best_trial(trials), None, [])
        if rows is None  # the trials saw a sample: the best few are judged again on all rows
        else refit_finalists(
            x_train, y_train, trials, train, seed=seed, threads=threads, num_class=cv.num_class
        )
    )
    columns = feature_columns(train, best.point, x_train.columns)
    final = model_params(best.point, train, seed, threads, cv.num_class)
    if booster is None:
        booster = refit(x_train, y_train, columns, final, best.best_iteration)
    boosters = kept.boosters(best)
    if boosters is None:  # replayed from a checkpoint, or not the search's best: CV it again
        boosters = cv.evaluate(best.point)[3].boosters
    oof = cv.out_of_fold(best.point, boosters, best.best_iteration)
    test_scores = booster.predict(model_frame(x_test, columns), num_threads=threads)
    return Fitted(trials, best, oof, booster, columns, final, test_scores, rows, finalists)


def log_trial_shape(rows: np.ndarray | None, training_rows: int, rounds: int) -> None:
    log.info(
        "search on %s of %d training rows, up to %d rounds a trial",
        "all" if rows is None else len(rows),
        training_rows,
        rounds,
    )


def first_rung(train: TrainParams, *, sampled: bool) -> TrainParams:
    """The settings the search's trials run with: on a sample of the rows, their boosting
    rounds capped at ``train.search.max_trial_rounds`` (the finalists, on all rows, run to
    ``max_rounds``); on all rows the trials are the last rung, and run to ``max_rounds``."""
    search = train.search
    cap = search.max_trial_rounds
    if not sampled or cap is None or cap >= search.max_rounds:
        return train
    return train.model_copy(update={"search": search.model_copy(update={"max_rounds": cap})})


def refit_finalists(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    trials: list[Trial],
    train: TrainParams,
    *,
    seed: int,
    threads: int,
    num_class: int,
) -> tuple[Trial, Any, list[dict[str, Any]]]:
    """The last rung of successive halving: the ``train.search.finalists`` best trials (scored
    on a sample of the rows) each trained on all training rows but a seeded tenth, early
    stopping on it; the best there wins and is trained on all rows at its rounds. Returns the
    winner, its booster and each finalist's held-out score and rounds."""
    import lightgbm as lgb

    rows = AllRows(x_train, y_train, train.search, seed)
    judged, winner = [], None
    for trial in finalist_trials(trials, train.search.finalists):
        config = model_params(trial.point, train, seed, threads, num_class)
        whole = rows.dataset(feature_columns(train, trial.point, x_train.columns), config)
        score, rounds = rows.stopped(whole, config)
        judged.append({"number": trial.number, "held_out_score": score, "rounds": rounds})
        if winner is None or score < winner[0]:
            winner = (score, trial, whole, config, rounds)
        del whole
    assert winner is not None  # a search has at least one trial
    _, best, whole, config, rounds = winner
    described = ", ".join(
        f"trial {j['number']} {j['held_out_score']:.6g} ({j['rounds']} rounds)" for j in judged
    )
    log.info(
        "finalists on all %d training rows: %s; trial %d wins", len(x_train), described, best.number
    )
    return best, lgb.train(config, whole, num_boost_round=rounds), judged


def finalist_trials(trials: list[Trial], count: int) -> list[Trial]:
    """The ``count`` best trials by score (ties: the earlier), one per distinct point."""
    chosen: list[Trial] = []
    for trial in sorted(trials, key=lambda t: (t.score, t.number)):
        if all(trial.point != c.point for c in chosen):
            chosen.append(trial)
        if len(chosen) == count:
            break
    return chosen


def trial_rows(y: np.ndarray, train: TrainParams, seed: int) -> np.ndarray | None:
    """The training rows the search's trials cross-validate on, in order: ``None`` (all) up
    to ``train.search.max_trial_rows``, else a seeded sample of that many. Classification
    draws each class's share, and keeps at least ``cv_folds`` rows of every class (all of a
    smaller one), so every fold knows every class."""
    limit = train.search.max_trial_rows
    if limit is None or len(y) <= limit:
        return None
    rng = np.random.default_rng(seed)
    if not train.is_classification:
        return np.sort(rng.choice(len(y), limit, replace=False))
    chosen = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        share = round(len(members) * limit / len(y))
        wanted = min(len(members), max(share, train.search.cv_folds))
        chosen.append(rng.choice(members, wanted, replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class Results:
    """What the train stage writes besides the booster."""

    metrics: dict[str, Any]
    summary: dict[str, Any]
    plots: dict[str, pd.DataFrame]  # file name -> plot data
    slices: dict[str, Any]  # the test metric by segment (``mlpipeline.model.slices``)
    worst: list[dict[str, Any]]  # the worst test predictions, with their contributions


def results(
    fitted: Fitted,
    target: Target,
    actual: tuple[np.ndarray, np.ndarray],
    test: pd.DataFrame,
    spec: FeatureSpec,
    seed: int = 0,
    threads: int = 1,
) -> Results:
    """Metrics (CV out of fold and test), the model summary package reads, plot data, the
    test metric by segment and the worst test predictions; ``actual``: the training and test
    targets to score against; ``test``: the test part (its features and target)."""
    train, best = target.train, fitted.best
    metric = train.search.metric
    metrics = {
        "cv": {
            **quality(train, oof_actual(actual[0], fitted.oof_rows), fitted.oof),
            f"search_{metric}": loss(metric, best.score),
        },
        "test": quality(train, actual[1], fitted.test_scores),
        "best_iteration": best.best_iteration,
        "trials": len(fitted.trials),
    }
    importance = importance_frame(fitted.booster, fitted.columns)
    shares = mean_abs_contribution(fitted.booster, test, fitted.columns, threads, seed)
    importance["mean_abs_contribution"] = shares.reindex(importance["feature"]).to_numpy()
    features = test[fitted.columns]
    slices = slice_report(train, features, actual[1], fitted.test_scores, importance)
    worst = worst_predictions(
        train, features, actual[1], fitted.test_scores, fitted.booster, fitted.columns,
        target.classes, threads,
    )  # fmt: skip
    plots = {
        SEARCH_HISTORY: history_frame(fitted.trials),
        IMPORTANCE: importance,
        SLICES: slices_frame(slices),
        **plot_frames(train, test[target.name], actual[1], fitted.test_scores, target.classes),
    }
    summary = model_summary(fitted, target, spec)
    return Results(rounded(metrics), summary, plots, rounded(slices), rounded(worst))


def oof_actual(actual: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The training targets the out-of-fold scores are of."""
    return actual if rows is None else actual[rows]


RUNTIME_KEYS = ("num_threads",)  # how the model was trained, not what: left out of summaries


def model_summary(fitted: Fitted, target: Target, spec: FeatureSpec) -> dict[str, Any]:
    """What the package stage and the served model need to know about the trained model."""
    train, best = target.train, fitted.best
    return {
        "task": train.task,
        "target": target.name,
        "target_transform": train.target_transform,
        "classes": target.classes,
        "feature_set": feature_set_name(train, best.point),
        "features": fitted.columns,
        "spec": asdict(spec.select(fitted.columns)),
        "lightgbm_params": {
            k: v for k, v in fitted.lightgbm_params.items() if k not in RUNTIME_KEYS
        },
        "best_trial": {k: v for k, v in asdict(best).items() if k not in ("seconds", "reused")},
        **({"finalists": fitted.finalists} if fitted.finalists else {}),
    }


def trial_record(trial: Trial) -> dict[str, Any]:
    """One trial as an MLflow child run: its point, CV score, best iteration and duration."""
    return {
        "name": f"trial {trial.number}",
        "params": trial.point,
        "metrics": {
            "cv_score": trial.score,
            "cv_score_std": trial.score_std,
            "best_iteration": trial.best_iteration,
            "seconds": trial.seconds,
        },
        "tags": {"trial.number": trial.number, "trial.reused": str(trial.reused).lower()},
    }
