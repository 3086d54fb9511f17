"""Why the model said what it said: LightGBM's exact per-row contributions (TreeSHAP,
``pred_contrib=True``), their mean size per feature, and the worst test predictions with the
contributions behind each.

A row's contributions, one per feature plus the base value, add up to its raw score: the
model's margin before the link (regression: on the transformed target's scale; binary: log
odds; multiclass: one margin per class).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import TrainParams
from mlpipeline.features.transform import (
    class_probabilities,
    inverse_target,
    model_frame,
)
from mlpipeline.model.slices import row_losses

log = logging.getLogger(__name__)

# The mean |contribution| is taken over a seeded sample of the test rows, as many as a fixed
# amount of TreeSHAP work allows (so the same model gets the same rows on every machine):
# CONTRIBUTION_WORK leaf x depth^2 units (about 3 s of one core here), within these bounds.
IMPORTANCE_ROWS = (100, 10_000)
CONTRIBUTION_WORK = 5e9
TOP_CONTRIBUTIONS = 3  # contributions listed per worst prediction


def contributions(
    booster: Any, frame: pd.DataFrame, columns: list[str], threads: int
) -> np.ndarray:
    """(rows, classes, features + 1): each row's contribution of every feature, and the base
    value last; one class for regression and binary."""
    raw = booster.predict(model_frame(frame, columns), pred_contrib=True, num_threads=threads)
    raw = np.asarray(raw, dtype=float)
    return raw.reshape(len(frame), -1, len(columns) + 1)


def tree_depth(left: list[int], right: list[int]) -> int:
    """The depth of one tree from LightGBM's child arrays (a negative child is a leaf; a
    child's index is always above its parent's)."""
    depth, deepest = {0: 0}, 0
    for node, children in enumerate(zip(left, right, strict=True)):
        for child in children:
            if child >= 0:
                depth[child] = depth[node] + 1
            else:
                deepest = max(deepest, depth[node] + 1)
    return deepest


def contribution_work(booster: Any) -> float:
    """TreeSHAP's work for one row: each tree's leaves times its depth squared, summed
    (the O(T L D^2) of Lundberg et al.), read from the model text in well under a second."""
    work, left = 0.0, None
    for line in booster.model_to_string().splitlines():
        if line.startswith("left_child="):
            left = [int(v) for v in line.removeprefix("left_child=").split()]
        elif line.startswith("right_child=") and left is not None:
            right = [int(v) for v in line.removeprefix("right_child=").split()]
            work += (len(left) + 1) * tree_depth(left, right) ** 2
    return max(work, 1.0)


def importance_rows(booster: Any, available: int) -> int:
    """How many test rows the mean |contribution| is taken over: as many as
    ``CONTRIBUTION_WORK`` allows, within ``IMPORTANCE_ROWS``, at most ``available``."""
    fewest, most = IMPORTANCE_ROWS
    affordable = int(CONTRIBUTION_WORK // contribution_work(booster))
    return min(available, max(fewest, min(most, affordable)))


def mean_abs_contribution(
    booster: Any, frame: pd.DataFrame, columns: list[str], threads: int, seed: int
) -> pd.Series:
    """Mean |contribution| per feature over a seeded sample of the test rows (``importance_rows``
    of them), summed over the classes of a multiclass model."""
    rows, count = np.arange(len(frame)), importance_rows(booster, len(frame))
    if count < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))
    log.info("mean |contribution| over %d of %d test rows", len(rows), len(frame))
    sizes = np.abs(contributions(booster, frame.iloc[rows], columns, threads)[:, :, :-1])
    sizes = sizes.sum(axis=1)  # over the classes; exact sums below: the same on every CPU
    return pd.Series([math.fsum(sizes[:, j]) / len(rows) for j in range(len(columns))], columns)


def worst_rows(losses: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest losses, largest first (ties: the earlier row)."""
    order = np.lexsort((np.arange(len(losses)), -losses))
    return order[:count]


def worst_predictions(
    train: TrainParams,
    frame: pd.DataFrame,
    actual: np.ndarray,
    scores: np.ndarray,
    booster: Any,
    columns: list[str],
    classes: list | None,
    threads: int,
) -> list[dict[str, Any]]:
    """The test rows with the largest errors (regression) or the least probability of their
    true class (classification), with their feature values and top contributions (toward
    the predicted class's margin, for classification)."""
    losses = row_losses(train, actual, scores)
    chosen = worst_rows(losses, train.slices.worst_rows)
    if not len(chosen):
        return []
    rows = frame.iloc[chosen]
    found = contributions(booster, rows, columns, threads)
    records = []
    for i, position in enumerate(chosen):
        record, margin = _outcome(train, actual, scores, int(position), classes, found[i])
        record["features"] = {c: _plain(rows[c].iloc[i]) for c in columns}
        record["top_contributions"] = top_contributions(margin, columns)
        records.append(record)
    return records


def _outcome(
    train: TrainParams,
    actual: np.ndarray,
    scores: np.ndarray,
    position: int,
    classes: list | None,
    found: np.ndarray,
) -> tuple[dict[str, Any], np.ndarray]:
    """One worst row's actual and predicted values, and the contributions to explain: to the
    predicted class's margin (classification) or to the raw score (regression)."""
    record: dict[str, Any] = {"row": position}
    if train.is_classification:
        probabilities = class_probabilities(scores[position : position + 1])[0]
        predicted = int(probabilities.argmax())
        assert classes is not None
        record |= {
            "actual": _plain(classes[int(actual[position])]),
            "predicted": _plain(classes[predicted]),
            "probability_of_actual": float(probabilities[int(actual[position])]),
        }
        return record, found[predicted if found.shape[0] > 1 else 0]
    value = float(inverse_target(scores[position : position + 1], train.target_transform)[0])
    record |= {"actual": float(actual[position]), "predicted": value,
               "error": value - float(actual[position])}  # fmt: skip
    return record, found[0]


def top_contributions(margin: np.ndarray, columns: list[str]) -> list[dict[str, Any]]:
    """The ``TOP_CONTRIBUTIONS`` largest |contributions| of one row (features only)."""
    values = margin[:-1]
    order = np.lexsort((np.arange(len(values)), -np.abs(values)))[:TOP_CONTRIBUTIONS]
    return [{"feature": columns[j], "contribution": float(values[j])} for j in order]


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (missing: None)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
