from __future__ import annotations

import numpy as np
import pytest

from mlpipeline.model.metrics import (
    classification_metrics,
    precision_recall_frame,
    regression_metrics,
    roc_frame,
)


def test_regression_metrics_on_known_values():
    m = regression_metrics(np.array([100.0, 200.0, 300.0]), np.array([110.0, 190.0, 300.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert m["mape"] == pytest.approx(100 * (0.1 + 0.05) / 3)


def test_binary_metrics_on_known_values():
    labels = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(labels, np.column_stack([1 - p1, p1]))
    assert m["accuracy"] == 0.5  # 0.6 and 0.4 are on the wrong side
    assert m["f1"] == pytest.approx(0.5)  # precision 1/2, recall 1/2
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ranked right
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))


def test_multiclass_metrics_use_macro_f1_and_one_vs_rest_auc():
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    m = classification_metrics(labels, probabilities)
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(
        (2 / 3 + 1 + 2 / 3) / 3
    )  # class 0: p 1/2 r 1; class 2: p 1 r 1/2
    assert 0.5 < m["roc_auc"] <= 1


def test_auc_is_left_out_when_the_labels_hold_one_class():
    m = classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    assert "roc_auc" not in m and m["accuracy"] == 1.0


def test_curves_run_from_corner_to_corner_and_are_thinned():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    p1 = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 5000), 0, 1)
    probabilities = np.column_stack([1 - p1, p1])
    roc = roc_frame(labels, probabilities)
    assert (roc.iloc[0][["fpr", "tpr"]].tolist(), roc.iloc[-1][["fpr", "tpr"]].tolist()) == (
        [0, 0],
        [1, 1],
    )
    assert roc["fpr"].is_monotonic_increasing and len(roc) <= 1000
    pr = precision_recall_frame(labels, probabilities)
    assert list(pr.columns) == ["recall", "precision", "threshold"] and len(pr) <= 1000
    assert pr["recall"].iloc[0] == 1 and pr["recall"].iloc[-1] == 0


def test_multiclass_curves_pool_every_class():
    labels = np.array([0, 1, 2])
    roc = roc_frame(labels, np.eye(3))
    assert roc["tpr"].max() == 1 and roc["fpr"].min() == 0
