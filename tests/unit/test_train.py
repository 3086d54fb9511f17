from __future__ import annotations

import numpy as np
import pytest

from stages.search import lgb_params
from stages.train import importance_frame, refit, regression_metrics
from tests.unit.test_search import train_params


def test_regression_metrics_on_known_values():
    m = regression_metrics(np.array([100.0, 200.0, 300.0]), np.array([110.0, 190.0, 300.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert m["mape"] == pytest.approx(100 * (0.1 + 0.05) / 3)


def test_refit_model_beats_the_mean_and_ranks_carat_first(synthetic_regression):
    frame, price = synthetic_regression
    point = {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 10, "feature_set": "all"}
    columns = ["carat", "cut", "noise"]
    booster = refit(frame, np.log1p(price), columns, lgb_params(point, train_params(), 1, 1), 80)
    predicted = np.expm1(booster.predict(frame[columns]))
    assert regression_metrics(price, predicted)["r2"] > 0.9
    assert importance_frame(booster)["feature"].iloc[0] == "carat"
