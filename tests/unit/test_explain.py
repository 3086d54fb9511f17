"""Contributions (LightGBM's TreeSHAP) and the worst predictions, for each task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.model.boosting import model_params, refit
from mlpipeline.model.explain import (
    CONTRIBUTION_WORK,
    IMPORTANCE_ROWS,
    contribution_work,
    contributions,
    importance_rows,
    mean_abs_contribution,
    tree_depth,
    worst_predictions,
    worst_rows,
)
from tests.unit.test_slices import _with

COLUMNS = ["carat", "cut", "noise"]


def _fitted(frame, y, task, num_class=1):
    train = _with(task) if task != "regression" else _with(task, target_transform="none")
    point = {"learning_rate": 0.2, "num_leaves": 8, "min_child_samples": 10}
    params = model_params(point, train, 1, 1, num_class)
    return train, refit(frame, y, COLUMNS, params, 30)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_contributions_add_up_to_the_raw_score(synthetic_regression, task):
    frame, price = synthetic_regression
    classes = {"regression": 1, "binary": 2, "multiclass": 3}[task]
    y = np.log1p(price) if task == "regression" else pd.qcut(price, classes, labels=False)
    _, booster = _fitted(frame, np.asarray(y, float), task, classes if classes > 2 else 1)
    found = contributions(booster, frame.head(50), COLUMNS, threads=1)
    raw = np.asarray(booster.predict(frame.head(50)[COLUMNS], raw_score=True)).reshape(50, -1)
    assert found.shape == (50, raw.shape[1], len(COLUMNS) + 1)
    np.testing.assert_allclose(found.sum(axis=2), raw, atol=1e-9)
    sizes = mean_abs_contribution(booster, frame, COLUMNS, threads=1, seed=0)
    assert list(sizes.index) == COLUMNS and sizes["carat"] == sizes.max()


def test_the_worst_rows_come_first_and_ties_keep_their_order():
    assert worst_rows(np.array([1.0, 5.0, 5.0, 0.0, 9.0]), 3).tolist() == [4, 1, 2]


def test_worst_predictions_name_the_row_its_values_and_what_pushed_it(synthetic_regression):
    frame, price = synthetic_regression
    train, booster = _fitted(frame, np.asarray(price, float), "regression")
    scores = booster.predict(frame[COLUMNS])
    records = worst_predictions(
        train, frame, np.asarray(price, float), scores, booster, COLUMNS, None, threads=1
    )
    errors = np.abs(scores - np.asarray(price, float))
    assert len(records) == train.slices.worst_rows
    assert records[0]["row"] == int(errors.argmax())
    assert abs(records[0]["error"]) == pytest.approx(errors.max())
    assert set(records[0]["features"]) == set(COLUMNS)
    assert len(records[0]["top_contributions"]) == 3


def test_worst_classifications_are_the_least_probable_true_classes(synthetic_regression):
    frame, price = synthetic_regression
    labels = np.asarray(pd.qcut(price, 3, labels=False))
    train, booster = _fitted(frame, labels.astype(float), "multiclass", 3)
    scores = booster.predict(frame[COLUMNS])
    classes = ["cheap", "middle", "dear"]
    records = worst_predictions(train, frame, labels, scores, booster, COLUMNS, classes, 1)
    true = scores[np.arange(len(labels)), labels]
    assert records[0]["probability_of_actual"] == pytest.approx(true.min())
    assert records[0]["actual"] in classes and records[0]["predicted"] in classes


def test_a_multiclass_explanation_has_a_margin_and_contributions_per_class():
    from mlpipeline.features.transform import explained_output

    output = pd.DataFrame({"prediction": ["a", "b"], "probability_a": [0.7, 0.2]})
    margins = np.array([[1.0, -1.0], [0.5, 2.0]])
    parts = np.array([[0.6, 0.4, -0.5, -0.5], [0.25, 0.25, 1.0, 1.0]])  # (f, base) per class
    frame = explained_output(output, margins, parts, ["f"], {"classes": ["a", "b"]})
    assert list(frame.columns) == [
        "prediction", "probability_a", "raw_score.a", "contribution.a.f", "contribution.a.base",
        "raw_score.b", "contribution.b.f", "contribution.b.base",
    ]  # fmt: skip
    assert frame["contribution.b.f"].tolist() == [-0.5, 1.0]


def test_tree_depth_reads_lightgbm_child_arrays():
    # node 0 splits into node 1 and leaf 0; node 1 into node 2 and leaf 1; node 2 into leaves
    assert tree_depth([1, 2, -3], [-1, -2, -4]) == 3
    assert tree_depth([-1], [-2]) == 1


def _dumped_work(booster) -> float:
    def walk(node, depth=0):
        if "leaf_index" in node:
            return 1, depth
        (a, da), (b, db) = walk(node["left_child"], depth + 1), walk(node["right_child"], depth + 1)
        return a + b, max(da, db)

    sizes = [walk(tree["tree_structure"]) for tree in booster.dump_model()["tree_info"]]
    return float(sum(leaves * depth**2 for leaves, depth in sizes))


def test_the_sample_shrinks_as_the_model_deepens(synthetic_regression):
    frame, price = synthetic_regression
    y = np.log1p(np.asarray(price, float))
    _, small = _fitted(frame, y, "regression")
    train = _with("regression", target_transform="none")
    deep = refit(frame, y, COLUMNS, model_params(
        {"learning_rate": 0.05, "num_leaves": 255, "min_child_samples": 2}, train, 1, 1), 400,
    )  # fmt: skip
    assert contribution_work(small) == _dumped_work(small)
    assert contribution_work(deep) == _dumped_work(deep) > 20 * contribution_work(small)
    fewest, most = IMPORTANCE_ROWS
    assert importance_rows(small, 50) == 50  # every row, when few
    assert fewest <= importance_rows(deep, 10**6) < importance_rows(small, 10**6) <= most
    assert importance_rows(deep, 10**6) == max(
        fewest, min(most, int(CONTRIBUTION_WORK // contribution_work(deep)))
    )
