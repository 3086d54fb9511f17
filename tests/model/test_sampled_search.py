"""A search whose trials see a sample of the training rows (``train.search.max_trial_rows``)
and a refit on all of them: as good as a search on every row, at a fraction of its cost."""

from __future__ import annotations

import pytest

from mlpipeline.core.config import Params
from mlpipeline.features.prepare import featurize_table
from mlpipeline.model.metrics import regression_metrics
from mlpipeline.model.search import Checkpoint
from mlpipeline.model.training import Target, fit, results
from tests.helpers import make_params
from tests.model.test_behaviour import table


def _fitted(limit: int | None):
    raw = table(6000, "regression", seed=4)
    built = make_params("table.csv", "y", ["size", "grade", "noise"], ["grade"], "regression")
    built["train"]["search"].update(
        n_calls=4, max_rounds=300, max_trial_rows=limit, max_trial_rounds=40
    )
    params = Params.model_validate(built)
    prepared = featurize_table(raw, params.featurize, params.seed)
    train, test = prepared.train, prepared.test
    target = Target.learn(train["y"], params.train, "y")
    y_train = target.learned(train["y"], "training")[1]
    fitted = fit(
        train.drop(columns="y"), y_train, test.drop(columns="y"), params, Checkpoint(None),
        lambda trial: None,
    )  # fmt: skip
    actual = (target.learned(train["y"], "training")[0], test["y"].to_numpy(float))
    return fitted, results(fitted, target, actual, test, prepared.spec), actual


@pytest.fixture(scope="module")
def sampled_and_full():
    return _fitted(1200), _fitted(None)


def test_the_trials_see_the_sample_and_the_cv_metrics_describe_it(sampled_and_full):
    (fitted, written, _), (full, _, actual) = sampled_and_full
    assert len(fitted.oof) == len(fitted.oof_rows) == 1200 and full.oof_rows is None
    assert len(full.oof) == len(actual[0]) > 1200
    assert written.metrics["cv"]["rmse"] > 0


def test_a_sampled_search_refit_on_every_row_is_about_as_good_as_a_full_search(
    sampled_and_full,
):
    (fitted, _, _), (full, _, actual) = sampled_and_full
    sampled_rmse = regression_metrics(actual[1], fitted.test_scores)["rmse"]
    full_rmse = regression_metrics(actual[1], full.test_scores)["rmse"]
    assert sampled_rmse <= 1.05 * full_rmse


def test_the_best_few_trials_are_judged_again_on_all_rows_and_the_best_there_wins(
    sampled_and_full,
):
    (fitted, written, _), (full, full_written, _) = sampled_and_full
    judged = written.summary["finalists"]
    assert len(judged) == 3 and "finalists" not in full_written.summary
    assert fitted.best.number == min(judged, key=lambda j: j["held_out_score"])["number"]
    by_sample = sorted(fitted.trials, key=lambda t: (t.score, t.number))
    assert {j["number"] for j in judged} <= {t.number for t in by_sample[:4]}
    assert max(t.best_iteration for t in fitted.trials) == 40  # the first rung's rounds
    assert max(t.best_iteration for t in full.trials) > 40  # all rows: the last rung, to 300
    assert max(j["rounds"] for j in judged) > 40  # the finalists, too
    assert fitted.booster.num_trees() == next(
        j["rounds"] for j in judged if j["number"] == fitted.best.number
    )
