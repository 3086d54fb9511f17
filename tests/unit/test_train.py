from __future__ import annotations

import numpy as np
import pytest

from stages.errors import StageError
from stages.params import TrainParams
from stages.train import (
    CrossValidator,
    best_trial,
    feature_columns,
    history_frame,
    importance_frame,
    lgb_params,
    refit,
    regression_metrics,
    run_search,
    skopt_space,
)


def _train_params(**search) -> TrainParams:
    return TrainParams.model_validate(
        {
            "target_transform": "log1p",
            "num_threads": 1,
            "feature_sets": {"all": ["carat", "cut", "noise"], "carat": ["carat"]},
            "search": {
                "n_calls": 3,
                "n_initial_points": 2,
                "cv_folds": 3,
                "early_stopping_rounds": 10,
                "max_rounds": 60,
                "space": {
                    "learning_rate": {
                        "type": "real",
                        "low": 0.05,
                        "high": 0.3,
                        "prior": "log-uniform",
                    },
                    "num_leaves": {"type": "integer", "low": 4, "high": 16},
                    "min_child_samples": {"type": "integer", "low": 5, "high": 30},
                    "feature_set": {"type": "categorical", "categories": ["all", "carat"]},
                },
                **search,
            },
        }
    )


def test_regression_metrics_on_known_values():
    m = regression_metrics(np.array([100.0, 200.0, 300.0]), np.array([110.0, 190.0, 300.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert m["mape"] == pytest.approx(100 * (0.1 + 0.05) / 3)


def test_space_follows_params_types_and_priors():
    dims = skopt_space(_train_params().search)
    assert [d.name for d in dims] == [
        "learning_rate",
        "num_leaves",
        "min_child_samples",
        "feature_set",
    ]
    assert type(dims[0]).__name__ == "Real" and dims[0].prior == "log-uniform"
    assert type(dims[1]).__name__ == "Integer"
    assert type(dims[3]).__name__ == "Categorical"


def test_lgb_params_set_threads_seed_and_drop_the_feature_set():
    params = lgb_params({"num_leaves": 7, "feature_set": "all"}, _train_params(), seed=3, threads=2)
    assert params["num_leaves"] == 7 and params["seed"] == 3 and params["num_threads"] == 2
    assert params["deterministic"] is True
    assert "feature_set" not in params


def test_unknown_feature_in_a_set_is_named():
    with pytest.raises(StageError, match=r"feature_sets\.all names columns .*\['noise'\]"):
        feature_columns(_train_params(), {"feature_set": "all"}, ["carat", "cut"])


def test_search_is_deterministic_and_learns(synthetic_regression):
    frame, price = synthetic_regression
    params = _train_params()
    y = np.log1p(price)
    runs = [run_search(CrossValidator(frame, y, params, 7, 1), params, 7)[0] for _ in range(2)]
    assert [(t.point, t.score, t.best_iteration) for t in runs[0]] == [
        (t.point, t.score, t.best_iteration) for t in runs[1]
    ]
    assert len(runs[0]) == 3
    best = best_trial(runs[0])
    assert best.score == min(t.score for t in runs[0])
    history = history_frame(runs[0])
    assert history["best_score"].is_monotonic_decreasing
    assert history["best_score"].iloc[-1] == best.score


def test_refit_model_beats_the_mean_and_ranks_carat_first(synthetic_regression):
    frame, price = synthetic_regression
    params = _train_params()
    point = {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 10, "feature_set": "all"}
    booster = refit(
        frame, np.log1p(price), ["carat", "cut", "noise"], lgb_params(point, params, 1, 1), 80
    )
    predicted = np.expm1(booster.predict(frame[["carat", "cut", "noise"]]))
    assert regression_metrics(price, predicted)["r2"] > 0.9
    assert importance_frame(booster)["feature"].iloc[0] == "carat"


def test_out_of_fold_predictions_cover_every_row(synthetic_regression):
    frame, price = synthetic_regression
    params = _train_params(n_calls=1, n_initial_points=1)
    cv = CrossValidator(frame, np.log1p(price), params, 1, 1)
    trials, boosters = run_search(cv, params, 1)
    oof = cv.out_of_fold(trials[0].point, boosters, trials[0].best_iteration)
    assert oof.shape == (len(frame),) and np.isfinite(oof).all()
