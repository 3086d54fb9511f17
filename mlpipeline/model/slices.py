"""Where the model is wrong: the test metric per segment, and the worst predictions.

A segment is the test rows of one value of a categorical feature (every value, and the rows
where it is missing), or of one quantile range of a numeric feature — the most important
numeric features only (by gain), their ranges cut at the test part's quantiles. Each segment
gets the task's metric (regression: RMSE on the target's own scale; classification: log loss
and accuracy), its row count and its ratio to the whole test part; a segment of fewer than
``min_rows`` rows is marked small (its metric is noise), never hidden. The worst segment is
the one of at least ``min_rows`` rows whose metric is furthest from the whole part's, on the
bad side. Pure functions of arrays and frames: the train stage writes their results.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import SlicesParams, TrainParams
from mlpipeline.features.transform import class_probabilities, inverse_target

MISSING = "(missing)"
EPSILON = 1e-15  # log loss: the probability of the true class is clipped to [EPSILON, 1]


@dataclass(frozen=True)
class Segment:
    feature: str
    key: str  # the value, ``q1`` .. ``qk`` of a range, or MISSING
    rows: np.ndarray  # positions in the test part
    low: float | None = None  # a range's bounds: low <= value < high (the last includes high)
    high: float | None = None

    @property
    def label(self) -> str:
        return label(self.feature, self.key, self.low, self.high)


def label(feature: str, key: str, low: float | None = None, high: float | None = None) -> str:
    """``cut = Fair``, or ``carat q2: 0.4 to 0.7`` for a range."""
    if low is None:
        return f"{feature} = {key}"
    return f"{feature} {key}: {low:.4g} to {high:.4g}"


def primary_metric(train: TrainParams) -> str:
    return "log_loss" if train.is_classification else "rmse"


def row_losses(train: TrainParams, actual: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each test row's contribution to the primary metric: squared error on the target's own
    scale (regression), minus the log of the true class's probability (classification)."""
    if train.is_classification:
        probabilities = class_probabilities(scores)
        true = probabilities[np.arange(len(actual)), np.asarray(actual, int)]
        return -np.log(np.clip(true, EPSILON, 1.0))
    predicted = inverse_target(scores, train.target_transform)
    return (np.asarray(predicted, float) - np.asarray(actual, float)) ** 2


def segment_metrics(
    train: TrainParams, losses: np.ndarray, correct: np.ndarray | None, rows: np.ndarray
) -> dict[str, float]:
    """The primary metric (and accuracy, for classification) over ``rows``."""
    mean = math.fsum(losses[rows]) / len(rows)
    if not train.is_classification:
        return {"rmse": math.sqrt(mean)}
    assert correct is not None
    return {"log_loss": mean, "accuracy": float(np.mean(correct[rows]))}


def categorical_segments(values: pd.Series, feature: str) -> list[Segment]:
    """One segment per value seen in the test part (sorted), and one of missing values."""
    text = values.astype("string")
    found = [
        Segment(feature, str(value), np.flatnonzero((text == value).fillna(False).to_numpy()))
        for value in sorted(text.dropna().unique())
    ]
    missing = np.flatnonzero(text.isna().to_numpy())
    return [*found, *([Segment(feature, MISSING, missing)] if len(missing) else [])]


def range_segments(values: pd.Series, feature: str, bins: int) -> list[Segment]:
    """Quantile ranges of a numeric feature (as many as distinct edges allow), and missing."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    present = ~np.isnan(numbers)
    edges = np.unique(np.quantile(numbers[present], np.linspace(0, 1, bins + 1)))
    found = []
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = (numbers >= low) & ((numbers <= high) if last else (numbers < high))
        found.append(Segment(feature, f"q{i + 1}", np.flatnonzero(inside), float(low), float(high)))
    missing = np.flatnonzero(~present)
    return [*found, *([Segment(feature, MISSING, missing)] if len(missing) else [])]


def is_categorical(values: pd.Series, max_values: int) -> bool:
    """A category, text or boolean column, or a number with few distinct values."""
    if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
        return True
    return pd.api.types.is_bool_dtype(values) or values.nunique() <= max_values


def segments(
    frame: pd.DataFrame, importance: pd.DataFrame, settings: SlicesParams
) -> list[Segment]:
    """The segments of the test part ``frame`` (its columns: the model's features): every
    categorical feature's values, then ranges of the ``top_numeric`` numeric features of
    highest gain (``importance``: feature, gain; largest first)."""
    categorical = [c for c in frame.columns if is_categorical(frame[c], settings.bins)]
    numeric = [f for f in importance["feature"] if f in frame and f not in categorical]
    found = [s for c in categorical for s in categorical_segments(frame[c], c)]
    for feature in numeric[: settings.top_numeric]:
        found += range_segments(frame[feature], feature, settings.bins)
    return [s for s in found if len(s.rows)]


def slice_report(
    train: TrainParams,
    frame: pd.DataFrame,
    actual: np.ndarray,
    scores: np.ndarray,
    importance: pd.DataFrame,
) -> dict[str, Any]:
    """``reports/slices.json``: the metric, the whole test part, each segment (by feature,
    then value or range) and the worst one."""
    settings = train.slices
    metric = primary_metric(train)
    losses = row_losses(train, actual, scores)
    correct = None
    if train.is_classification:
        correct = class_probabilities(scores).argmax(axis=1) == np.asarray(actual, int)
    everything = np.arange(len(actual))
    overall = {"rows": len(actual), **segment_metrics(train, losses, correct, everything)}
    report: dict[str, Any] = {"metric": metric, "min_rows": settings.min_rows, "overall": overall}
    by_feature: dict[str, dict[str, Any]] = {}
    worst: dict[str, Any] | None = None
    for segment in segments(frame, importance, settings):
        values = segment_metrics(train, losses, correct, segment.rows)
        ratio = values[metric] / overall[metric] if overall[metric] else float("nan")
        entry = {"rows": len(segment.rows), **values, "ratio": ratio}
        if segment.low is not None:
            entry |= {"low": segment.low, "high": segment.high}
        entry["small"] = len(segment.rows) < settings.min_rows
        by_feature.setdefault(segment.feature, {})[segment.key] = entry
        if not entry["small"] and (worst is None or ratio > worst["ratio"]):
            worst = {"segment": segment.label, "rows": len(segment.rows), metric: values[metric],
                     "ratio": ratio}  # fmt: skip
    report["worst"] = worst
    report["segments"] = by_feature
    return report


def slices_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The plot data of ``reports/plots/slices.csv``: one row per segment, its label with
    its row count, the metric and its ratio to the whole part."""
    metric = report["metric"]
    rows = []
    for feature, entries in report["segments"].items():
        for key, entry in entries.items():
            name = label(feature, key, entry.get("low"), entry.get("high"))
            small = " small" if entry["small"] else ""
            rows.append(
                {
                    "segment": f"{name} (n={entry['rows']:,}{small})",
                    "metric": entry[metric],
                    "ratio": entry["ratio"],
                    "rows": entry["rows"],
                }
            )
    return pd.DataFrame(rows, columns=["segment", "metric", "ratio", "rows"])
