"""LightGBM for the search and the refit: the params of a point of the search space (the
model factory), fixed-fold cross-validation, and the final fit.

LightGBM's trees do not depend on its thread count (``deterministic``, column-wise
histograms), so threads are a runtime setting (``runtime.num_threads``), not a param.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import HIGHER_IS_BETTER, SearchParams, TrainParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.features.transform import model_frame

FEATURE_SET = "feature_set"  # the search dimension that picks a feature set


def cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_count(requested: int) -> int:
    """LightGBM threads: as requested, or one per usable core (its own default oversubscribes)."""
    return requested or cores()


def cap_threads(limit: int) -> None:
    """Cap the threads of every LightGBM call in this process at ``limit`` (<= 0: no cap),
    also between the boosting rounds of a running training: each parallel region reads the
    cap as it starts. LightGBM's C API ``LGBM_SetMaxThreads`` (the Python package has no
    wrapper for it)."""
    import ctypes

    from lightgbm.basic import _LIB

    _LIB.LGBM_SetMaxThreads(ctypes.c_int(limit))


def model_params(
    point: dict[str, Any], train: TrainParams, seed: int, threads: int, num_class: int = 1
) -> dict:
    """LightGBM parameters for one point of the search space (feature set excluded): the
    model factory that the search, the refit and the Dask engine share."""
    hyper = {k: v for k, v in point.items() if k != FEATURE_SET}
    classes = {"num_class": num_class} if train.task == "multiclass" else {}
    return {
        "objective": train.objective,
        "metric": train.search.metric,
        **classes,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
        "feature_pre_filter": False,
        **train.fixed,
        **hyper,
    }


def feature_set_name(train: TrainParams, point: dict[str, Any]) -> str:
    """The point's feature set, or the only one when the space has no ``feature_set``."""
    return point.get(FEATURE_SET) or next(iter(train.feature_sets))


def feature_columns(
    train: TrainParams, point: dict[str, Any], available: pd.Index | list[str]
) -> list[str]:
    """The columns of the point's feature set; an unknown column raises ``PipelineError``."""
    name = feature_set_name(train, point)
    columns = train.feature_sets[name]
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise PipelineError(
            f"train.feature_sets.{name} names columns the features do not have: {unknown} "
            f"(available: {list(available)})"
        )
    return columns


def _stable(value: float) -> float:
    """Ten significant digits. LightGBM's metric sums run in parallel, so their last bits
    depend on the thread count; the trees do not. Rounding keeps the search's decisions, and
    so its result, independent of ``n_jobs``."""
    return float(f"{float(value):.10g}")


def loss(metric: str, value: float) -> float:
    """The search minimises: metrics where higher is better (AUC) are negated."""
    return -value if metric in HIGHER_IS_BETTER else value


class CrossValidator:
    """Cross-validates points on fixed folds, building each feature set's Dataset once."""

    def __init__(
        self, frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, threads: int
    ) -> None:
        from sklearn.model_selection import KFold, StratifiedKFold

        self.frame, self.y, self.train, self.seed, self.threads = frame, y, train, seed, threads
        self.num_class = int(y.max()) + 1 if train.is_classification and len(y) else 1
        splitter = StratifiedKFold if train.is_classification else KFold
        folds = splitter(train.search.cv_folds, shuffle=True, random_state=seed)
        self.folds = list(folds.split(frame, y))
        self._datasets: dict[tuple[str, ...], Any] = {}
        self.callbacks: list[Any] = []  # more LightGBM callbacks, run after every round

    def dataset(self, columns: list[str]) -> Any:
        import lightgbm as lgb

        key = tuple(columns)
        if key not in self._datasets:
            self._datasets[key] = lgb.Dataset(
                model_frame(self.frame, columns),
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
            model_params(point, self.train, self.seed, self.threads, self.num_class),
            self.dataset(columns),
            num_boost_round=search.max_rounds,
            folds=self.folds,
            callbacks=[
                lgb.early_stopping(search.early_stopping_rounds, verbose=False),
                *self.callbacks,
            ],
            return_cvbooster=True,
        )
        mean = result[f"valid {search.metric}-mean"]
        std = result[f"valid {search.metric}-stdv"]
        score = loss(search.metric, _stable(mean[-1]))
        return score, _stable(std[-1]), len(mean), result["cvbooster"]

    def out_of_fold(
        self, point: dict[str, Any], boosters: list[Any], best_iteration: int
    ) -> np.ndarray:
        """Predictions for every training row from the fold model that did not see it
        (class probabilities, one column per class, for a multiclass task)."""
        columns = feature_columns(self.train, point, self.frame.columns)
        rows = len(self.frame)
        shape = (rows, self.num_class) if self.train.task == "multiclass" else rows
        predictions = np.empty(shape)
        for (_, held_out), booster in zip(self.folds, boosters, strict=True):
            predictions[held_out] = booster.predict(
                model_frame(self.frame.iloc[held_out], columns),
                num_iteration=best_iteration,
                num_threads=self.threads,
            )
        return predictions


def refit(frame: pd.DataFrame, y: np.ndarray, columns: list[str], params: dict, rounds: int) -> Any:
    """Train the chosen configuration on the whole training part."""
    import lightgbm as lgb

    dataset = lgb.Dataset(model_frame(frame, columns), label=y, params={"verbosity": -1})
    return lgb.train(params, dataset, num_boost_round=rounds)


class AllRows:
    """All the training rows, for configurations the search's trials scored on a sample: each
    is trained on nine tenths of them, early stopping on a seeded tenth, which gives its rounds
    and its score on all rows (the last rung of successive halving). One LightGBM Dataset per
    configuration; both parts are subsets of it (no copies of the table)."""

    def __init__(self, frame: pd.DataFrame, y: np.ndarray, search: SearchParams, seed: int):
        self.frame, self.y, self.search = frame, y, search
        self.held_out = np.random.default_rng(seed).random(len(frame)) < 0.1

    def dataset(self, columns: list[str], params: dict) -> Any:
        import lightgbm as lgb

        frame = model_frame(self.frame, columns)
        return lgb.Dataset(frame, label=self.y, params={**params, "verbosity": -1}).construct()

    def stopped(self, whole: Any, params: dict) -> tuple[float, int]:
        """The score on the held-out tenth (minimised, as the search's) and the rounds."""
        import lightgbm as lgb

        search = self.search
        booster = lgb.train(
            params,
            whole.subset(np.flatnonzero(~self.held_out)),
            num_boost_round=search.max_rounds,
            valid_sets=[whole.subset(np.flatnonzero(self.held_out))],
            callbacks=[lgb.early_stopping(search.early_stopping_rounds, verbose=False)],
        )
        score = booster.best_score["valid_0"][search.metric]
        return loss(search.metric, _stable(score)), max(booster.best_iteration, 1)


_THREADS_LINE = re.compile(r"^\[num_threads: \d+\]$", re.MULTILINE)


def portable_model_text(booster: Any) -> str:
    """The booster in LightGBM's text format, its thread count recorded as 0 (LightGBM's
    default): LightGBM writes the params it trained with, and the threads — a runtime setting
    that changes no tree — would make the same model other bytes on a machine with other
    cores. Whoever loads it passes its own thread count to ``predict``."""
    return _THREADS_LINE.sub("[num_threads: 0]", booster.model_to_string())


def importance_frame(booster: Any, columns: list[str]) -> pd.DataFrame:
    """Gain importance per feature (``columns``: the booster's features under their own
    names), largest first."""
    gain = booster.feature_importance(importance_type="gain")
    frame = pd.DataFrame({"feature": list(columns), "gain": gain})
    return frame.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)
