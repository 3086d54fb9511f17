from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import TrainParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.model.boosting import AllRows, importance_frame, model_params, refit
from mlpipeline.model.metrics import plot_frames, regression_metrics
from mlpipeline.model.search import Trial
from mlpipeline.model.training import (
    Target,
    encode_labels,
    finalist_trials,
    first_rung,
    refit_finalists,
    target_classes,
    trial_rows,
)
from tests.unit.test_search import train_params


def test_refit_model_beats_the_mean_and_ranks_carat_first(synthetic_regression):
    frame, price = synthetic_regression
    point = {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 10, "feature_set": "all"}
    columns = ["carat", "cut", "noise"]
    booster = refit(frame, np.log1p(price), columns, model_params(point, train_params(), 1, 1), 80)
    predicted = np.expm1(booster.predict(frame[columns]))
    assert regression_metrics(price, predicted)["r2"] > 0.9
    assert importance_frame(booster, columns)["feature"].iloc[0] == "carat"


def _with(task: str, **fields) -> TrainParams:
    return TrainParams.model_validate({**train_params(task).model_dump(), **fields})


def test_classes_are_sorted_and_the_task_must_fit_them():
    binary, multiclass = train_params("binary"), train_params("multiclass")
    assert target_classes(pd.Series(["no", "yes", "no", None]), binary, "t") == ["no", "yes"]
    assert target_classes(pd.Series([3, 1, 2]), multiclass, "t") == [1, 2, 3]
    with pytest.raises(PipelineError, match="task 'binary' needs two classes, target 't' has 3"):
        target_classes(pd.Series(["a", "b", "c"]), binary, "t")
    with pytest.raises(PipelineError, match="has 1"):
        target_classes(pd.Series(["a", "a"]), multiclass, "t")


def test_the_positive_class_comes_last():
    values = pd.Series(["approved", "declined"])
    assert target_classes(values, _with("binary", positive_class="approved"), "t") == [
        "declined",
        "approved",
    ]
    assert target_classes(pd.Series([1, 0]), _with("binary", positive_class="0"), "t") == [1, 0]
    with pytest.raises(PipelineError, match="positive_class 'yes' is not a class of target 't'"):
        target_classes(values, _with("binary", positive_class="yes"), "t")


def test_labels_unknown_to_training_are_named():
    assert encode_labels(pd.Series(["b", "a", "b"]), ["a", "b"], "test").tolist() == [1, 0, 1]
    with pytest.raises(PipelineError, match=r"test part has target value\(s\) .*\['c'\]"):
        encode_labels(pd.Series(["a", "c"]), ["a", "b"], "test")


def test_a_text_target_in_a_regression_task_is_named():
    with pytest.raises(
        PipelineError, match=r"target 'grade' is not numeric .* binary or multiclass"
    ):
        Target("grade", train_params()).learned(pd.Series(["a", "b"], name="grade"), "training")


def test_classification_plots_hold_labels_probabilities_and_curves():
    train = train_params("binary")
    values = pd.Series(["no", "yes", "yes", "no"])
    plots = plot_frames(
        train, values, np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.1]), ["no", "yes"]
    )
    assert set(plots) == {"predictions.csv", "confusion.csv", "roc.csv", "precision_recall.csv"}
    predictions = plots["predictions.csv"]
    assert list(predictions.columns) == ["actual", "predicted", "probability_no", "probability_yes"]
    assert predictions["predicted"].tolist() == ["no", "yes", "no", "no"]
    assert predictions["probability_yes"].tolist() == [0.2, 0.7, 0.4, 0.1]


def _sampled(task: str, limit: int | None) -> TrainParams:
    return train_params(task, max_trial_rows=limit)


def test_trials_use_every_row_up_to_the_limit():
    y = np.arange(500.0)
    assert trial_rows(y, _sampled("regression", 500), seed=1) is None
    assert trial_rows(y, _sampled("regression", None), seed=1) is None


def test_trials_above_the_limit_use_a_seeded_sample_of_exactly_that_many_rows():
    y = np.arange(5000.0)
    rows = trial_rows(y, _sampled("regression", 1000), seed=1)
    assert len(rows) == len(np.unique(rows)) == 1000 and (np.diff(rows) > 0).all()
    assert (rows == trial_rows(y, _sampled("regression", 1000), seed=1)).all()
    assert not (rows == trial_rows(y, _sampled("regression", 1000), seed=2)).all()


def test_a_sample_keeps_each_class_share_and_every_rare_class():
    y = np.array([0] * 3000 + [1] * 1998 + [2] * 2)
    rows = trial_rows(y, _sampled("multiclass", 500), seed=3)
    counts = np.bincount(y[rows])
    assert counts.tolist() == [300, 200, 2]  # a class of 2 rows keeps both (fewer than 3 folds)


def test_trials_on_a_sample_stop_at_the_first_rungs_rounds_and_trials_on_all_rows_do_not():
    train = train_params(max_rounds=1000, max_trial_rounds=300)
    assert first_rung(train, sampled=True).search.max_rounds == 300
    assert first_rung(train, sampled=False) is train
    assert train.search.max_rounds == 1000  # the finalists' rounds are left as they are
    uncapped = train_params(max_rounds=200, max_trial_rounds=300)
    assert first_rung(uncapped, sampled=True).search.max_rounds == 200
    assert first_rung(train_params(max_trial_rounds=None), sampled=True).search.max_rounds == 60


def test_the_rounds_on_all_rows_stop_early_on_a_held_out_tenth(synthetic_regression):
    frame, price = synthetic_regression
    train = train_params()
    point = {"learning_rate": 0.3, "num_leaves": 8, "min_child_samples": 10}
    params = model_params(point, train, 1, 1)
    y, columns = np.log1p(price), ["carat", "cut"]
    rows = AllRows(frame, y, train.search, seed=1)
    score, rounds = rows.stopped(rows.dataset(columns, params), params)
    again = AllRows(frame, y, train.search, seed=1)
    assert (score, rounds) == again.stopped(again.dataset(columns, params), params)
    assert 1 <= rounds < train.search.max_rounds
    assert 0 < score < np.std(y[rows.held_out])  # better than the mean on the held-out tenth
    assert 0.05 < rows.held_out.mean() < 0.15


def _trial(number: int, score: float, **point) -> Trial:
    return Trial(number, {"feature_set": "all", **point}, score, 0.0, 10, 1.0)


def test_the_finalists_are_the_best_distinct_points():
    a, b = {"learning_rate": 0.1}, {"learning_rate": 0.2}
    trials = [_trial(0, 0.5, **a), _trial(1, 0.3, **b), _trial(2, 0.3, **b), _trial(3, 0.4, **a)]
    assert [t.number for t in finalist_trials(trials, 2)] == [1, 3]
    assert [t.number for t in finalist_trials(trials, 5)] == [1, 3]


def test_a_finalist_that_scored_worse_on_the_sample_wins_on_all_rows(synthetic_regression):
    frame, price = synthetic_regression
    y = np.log1p(price)
    starved = _trial(0, 0.1, learning_rate=0.03, num_leaves=2, min_child_samples=150)
    able = _trial(1, 0.2, learning_rate=0.3, num_leaves=8, min_child_samples=10)
    train = _with("regression", fixed={"lambda_l2": 0.0})

    def refit_with(count: int):
        search = train.search.model_copy(update={"finalists": count})
        chosen = train.model_copy(update={"search": search})
        return refit_finalists(frame, y, [starved, able], chosen, seed=1, threads=1, num_class=1)

    best, booster, judged = refit_with(2)
    assert best is able and [j["number"] for j in judged] == [0, 1]
    assert judged[1]["held_out_score"] < judged[0]["held_out_score"]
    assert booster.num_trees() == judged[1]["rounds"]
    params = model_params(able.point, train, 1, 1)
    fresh = refit(frame, y, ["carat", "cut", "noise"], params, judged[1]["rounds"])
    assert booster.model_to_string() == fresh.model_to_string()  # trained on all rows
    only, _, alone = refit_with(1)  # one finalist: the search's best, as before
    assert only is starved and len(alone) == 1
