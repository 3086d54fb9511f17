"""Behavioural tests of a trained, packaged model (Made-With-ML's three kinds): minimum
quality, direction (more of a driver means more of the target) and invariance (a column that
does not matter does not move the prediction).

The model is trained here, by the library's own functions (featurize, search, refit,
package), on tables the tests build with known relationships, and queried as the served
model is: raw rows in, predictions out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import Params
from mlpipeline.data.io import write_json, write_parquet, write_text
from mlpipeline.data.names import BOOSTER_FILE
from mlpipeline.features.prepare import featurize_table
from mlpipeline.model.boosting import portable_model_text
from mlpipeline.model.metrics import quality, regression_metrics
from mlpipeline.model.search import Checkpoint
from mlpipeline.model.training import Target, fit, results
from mlpipeline.serve.packaging import model_kwargs, save_model
from tests.helpers import make_params

LEVELS = {"low": 0.0, "mid": 4.0, "high": 8.0}


def table(rows: int, task: str, seed: int = 0) -> pd.DataFrame:
    """``size`` drives the target up, ``grade`` shifts it by level, ``noise`` does nothing."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, rows)
    grade = rng.choice(list(LEVELS), rows)
    signal = 2.0 * size + pd.Series(grade).map(LEVELS).to_numpy()
    frame = pd.DataFrame({"size": size, "grade": grade, "noise": rng.normal(size=rows)})
    if task == "regression":
        return frame.assign(y=signal + rng.normal(0, 1.0, rows))
    return frame.assign(y=np.where(signal + rng.normal(0, 2.0, rows) > 14, "yes", "no"))


def trained(tmp: Path, task: str):
    """The packaged model of a small search on ``table``, and its held-out rows."""
    raw = table(1500, task)
    built = make_params("table.csv", "y", ["size", "grade", "noise"], ["grade"], task)
    built["train"]["search"].update(n_calls=3, max_rounds=200)
    params = Params.model_validate(built)
    prepared = featurize_table(raw, params.featurize, params.seed)
    train, test, spec = prepared.train, prepared.test, prepared.spec
    target = Target.learn(train["y"], params.train, "y")
    y_train = target.learned(train["y"], "training")[1]
    features = train.drop(columns="y")
    fitted = fit(
        features, y_train, test.drop(columns="y"), params, Checkpoint(None), lambda trial: None
    )
    actual = (target.learned(train["y"], "training")[0], target.learned(test["y"], "test")[0])
    written = results(fitted, target, actual, test, spec)
    write_text(portable_model_text(fitted.booster), tmp / "model" / BOOSTER_FILE)
    write_json(written.summary, tmp / "model" / "summary.json")
    write_parquet(raw, tmp / "raw.parquet")
    kwargs = model_kwargs(tmp / "model", tmp / "raw.parquet", params, written.summary, tmp)
    return save_model(tmp / "pyfunc", kwargs), test, params


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("regression"), "regression")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("binary"), "binary")


def test_the_regressor_meets_a_minimum_quality(regressor):
    model, test, _ = regressor
    predicted = np.asarray(model.predict(test[["size", "grade", "noise"]]), dtype=float)
    assert regression_metrics(test["y"].to_numpy(float), predicted)["r2"] > 0.9


def test_more_size_means_a_higher_prediction_on_average(regressor):
    model, test, _ = regressor
    rows = test[["size", "grade", "noise"]].copy()
    rows = rows[rows["size"] < 8]
    before = np.asarray(model.predict(rows), dtype=float)
    after = np.asarray(model.predict(rows.assign(size=rows["size"] + 2)), dtype=float)
    assert (after - before).mean() > 2.0  # the true effect is +4
    assert (after >= before - 1.0).mean() > 0.95  # and almost never lower


def test_a_higher_grade_is_not_predicted_lower(regressor):
    model, test, _ = regressor
    rows = test[["size", "grade", "noise"]]
    means = [np.asarray(model.predict(rows.assign(grade=g)), dtype=float).mean() for g in LEVELS]
    assert means == sorted(means) and means[-1] - means[0] > 4.0


def test_a_column_that_does_not_matter_does_not_move_the_prediction(regressor):
    model, test, _ = regressor
    rows = test[["size", "grade", "noise"]]
    shuffled = rows.assign(noise=np.random.default_rng(1).permutation(rows["noise"].to_numpy()))
    change = np.abs(
        np.asarray(model.predict(shuffled), dtype=float)
        - np.asarray(model.predict(rows), dtype=float)
    )
    assert change.mean() < 0.1 * test["y"].std()


def test_the_classifier_ranks_well_and_its_probability_follows_the_driver(classifier):
    model, test, params = classifier
    rows = test[["size", "grade", "noise"]]
    output = model.predict(rows)
    labels = (test["y"] == "yes").astype(int).to_numpy()
    scores = output["probability_yes"].to_numpy()
    assert quality(params.train, labels, scores)["roc_auc"] > 0.9
    more = model.predict(rows.assign(size=rows["size"] + 2))["probability_yes"].to_numpy()
    assert (more - scores).mean() > 0.05 and set(output["prediction"]) <= {"no", "yes"}


@pytest.mark.parametrize("which", ["regressor", "classifier"])
def test_explain_adds_contributions_that_add_up_to_the_raw_score(which, request):
    model, test, _ = request.getfixturevalue(which)
    rows = test[["size", "grade", "noise"]].head(40)
    plain = model.predict(rows)
    explained = model.predict(rows, params={"explain": True})
    parts = [f"contribution.{name}" for name in ("size", "grade", "noise", "base")]
    total = explained[parts].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, explained["raw_score"].to_numpy(), atol=1e-6)
    if which == "regressor":  # the plain answer is unchanged, and the explained one agrees
        np.testing.assert_array_equal(explained["prediction"].to_numpy(), np.asarray(plain))
        assert (
            explained["contribution.size"].abs().mean()
            > explained["contribution.noise"].abs().mean()
        )
    else:
        pd.testing.assert_frame_equal(explained[plain.columns], plain)
        probability = 1 / (1 + np.exp(-explained["raw_score"].to_numpy()))  # log odds
        np.testing.assert_allclose(probability, plain["probability_yes"].to_numpy(), atol=1e-9)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_a_non_boolean_explain_is_refused(regressor, bad):
    from mlflow.exceptions import MlflowException

    model, test, _ = regressor
    with pytest.raises(MlflowException) as raised:
        model.predict(test[["size", "grade", "noise"]].head(2), params={"explain": bad})
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
