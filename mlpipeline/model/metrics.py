"""Model quality for each task: metrics, and the data of the DVC plots.

Regression is scored on the target's own scale (after undoing ``target_transform``);
classification on the class probabilities, with the most probable class as the prediction.
Labels here are class indexes (0 .. k-1, in the order of the ``classes`` list).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import TrainParams
from mlpipeline.data.names import CONFUSION, PRECISION_RECALL, PREDICTIONS, ROC
from mlpipeline.features.transform import class_predictions, class_probabilities, inverse_target

log = logging.getLogger(__name__)

CURVE_POINTS = 1000  # plot rows kept per curve: enough to draw, small enough to diff


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and MAPE (in %) on the original target scale.

    Sums are exact (``math.fsum``): NumPy's depend on the CPU's SIMD width in the last bits,
    and metrics are compared across machines (``ci/check_lock.py``)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    error = predicted - actual
    squared = math.fsum(error**2)
    total = math.fsum((actual - _mean(actual)) ** 2)
    nonzero = actual != 0
    return {
        "rmse": math.sqrt(squared / len(actual)),
        "mae": _mean(np.abs(error)),
        "r2": 1 - squared / total if total > 0 else float("nan"),
        "mape": 100 * _mean(np.abs(error[nonzero] / actual[nonzero])),
    }


def _mean(values: np.ndarray) -> float:
    return math.fsum(values) / len(values) if len(values) else float("nan")


def rounded(metrics: Any, digits: int = 10) -> Any:
    """Metrics (nested dicts and lists) to ``digits`` significant digits, as written to the
    metrics file: a last-bit difference between machines (LightGBM's and scikit-learn's float
    sums) then reaches the file only when a value sits on a rounding boundary."""
    if isinstance(metrics, dict):
        return {key: rounded(value, digits) for key, value in metrics.items()}
    if isinstance(metrics, list):
        return [rounded(value, digits) for value in metrics]
    if isinstance(metrics, float) and math.isfinite(metrics):
        return float(f"{metrics:.{digits}g}")
    return metrics


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Log loss, ROC AUC, accuracy and F1 (of the second class for a binary task, macro
    average over classes otherwise). ROC AUC is left out when the labels hold one class."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    k = probabilities.shape[1]
    every_class = list(range(k))
    predicted = probabilities.argmax(axis=1)
    metrics = {
        "log_loss": float(log_loss(labels, probabilities, labels=every_class)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(
            f1_score(labels, predicted, average="binary")
            if k == 2
            else f1_score(labels, predicted, labels=every_class, average="macro", zero_division=0)
        ),
    }
    present = np.unique(labels)
    if len(present) < 2:
        log.warning("ROC AUC is undefined: the labels hold a single class")
    elif k == 2:
        metrics["roc_auc"] = float(roc_auc_score(labels, probabilities[:, 1]))
    else:  # one-vs-rest, macro average, over the classes present
        scores = probabilities[:, present]
        scores = scores / scores.sum(axis=1, keepdims=True)
        metrics["roc_auc"] = float(
            roc_auc_score(labels, scores, multi_class="ovr", labels=present)
            if len(present) > 2
            else roc_auc_score(labels == present[1], scores[:, 1])
        )
    return metrics


def _positive_scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, ...]:
    """Binary: the second class's probability. Multiclass: one-vs-rest, all classes pooled
    (the micro average)."""
    k = probabilities.shape[1]
    if k == 2:
        return (labels == 1).astype(int), probabilities[:, 1]
    onehot = (labels[:, None] == np.arange(k)[None, :]).astype(int)
    return onehot.ravel(), probabilities.ravel()


def _thin(frame: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    if len(frame) <= points:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))
    return frame.iloc[keep].reset_index(drop=True)


def roc_frame(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """The ROC curve: false and true positive rates by threshold."""
    from sklearn.metrics import roc_curve

    fpr, tpr, threshold = roc_curve(*_positive_scores(labels, probabilities))
    frame = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(threshold, 1.0)})
    return _thin(frame.round(6))


def precision_recall_frame(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """The precision-recall curve, by threshold (the last point has none)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, threshold = precision_recall_curve(*_positive_scores(labels, probabilities))
    frame = pd.DataFrame({"recall": recall, "precision": precision, "threshold": [*threshold, 1.0]})
    return _thin(frame.round(6))


def quality(train: TrainParams, actual: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics of raw model scores against the actual target (or labels)."""
    if train.is_classification:
        return classification_metrics(actual, class_probabilities(scores))
    return regression_metrics(actual, inverse_target(scores, train.target_transform))


def plot_frames(
    train: TrainParams, values: pd.Series, labels: np.ndarray, scores: np.ndarray, classes
) -> dict[str, pd.DataFrame]:
    """Test-set plot data by file name: predicted vs actual; for classification also the
    confusion matrix, the ROC and the precision-recall curves."""
    if not train.is_classification:
        predicted = inverse_target(scores, train.target_transform)
        return {PREDICTIONS: pd.DataFrame({"actual": values.to_numpy(), "predicted": predicted})}
    output = class_predictions(scores, classes)
    predictions = output.rename(columns={"prediction": "predicted"})
    predictions.insert(0, "actual", values.to_numpy())
    probabilities = class_probabilities(scores)
    return {
        PREDICTIONS: predictions,
        CONFUSION: predictions[["actual", "predicted"]],
        ROC: roc_frame(labels, probabilities),
        PRECISION_RECALL: precision_recall_frame(labels, probabilities),
    }
