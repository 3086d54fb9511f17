from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import TrainParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.model.boosting import importance_frame, model_params, refit, refit_all_rows
from mlpipeline.model.metrics import plot_frames, regression_metrics
from mlpipeline.model.training import Target, encode_labels, target_classes, trial_rows
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


def test_the_refit_of_all_rows_stops_early_on_a_held_out_tenth_of_one_dataset(
    synthetic_regression,
):
    frame, price = synthetic_regression
    train = train_params()
    point = {"learning_rate": 0.3, "num_leaves": 8, "min_child_samples": 10}
    params = model_params(point, train, 1, 1)
    y, columns = np.log1p(price), ["carat", "cut"]
    booster, rounds = refit_all_rows(frame, y, columns, params, train.search, seed=1)
    again, rounds_again = refit_all_rows(frame, y, columns, params, train.search, seed=1)
    assert 1 <= rounds < train.search.max_rounds and rounds == rounds_again
    assert booster.num_trees() == rounds
    # the Dataset built once gives the model a fresh one gives
    fresh = refit(frame, y, columns, params, rounds)
    assert booster.model_to_string() == again.model_to_string() == fresh.model_to_string()
