"""A warm start on the library's own search and refit: told an earlier search's trials, a
search of the same budget finds a CV score at least as good as a cold one — over several seeds,
by the median, since one seed's outcome is a trajectory, not a property — and the same source
gives the same model bytes twice."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest

from mlpipeline.core.config import Params
from mlpipeline.features.prepare import featurize_table
from mlpipeline.model.boosting import portable_model_text
from mlpipeline.model.search import Checkpoint, WarmStart
from mlpipeline.model.training import Target, fit
from tests.helpers import make_params
from tests.model.test_behaviour import table

SPACE = {
    "learning_rate": {"type": "real", "low": 0.02, "high": 0.5, "prior": "log-uniform"},
    "num_leaves": {"type": "integer", "low": 4, "high": 64, "prior": "log-uniform"},
    "min_child_samples": {"type": "integer", "low": 5, "high": 200, "prior": "log-uniform"},
}


def params(n_calls: int, seed: int) -> Params:
    built = make_params("table.csv", "y", ["size", "grade", "noise"], ["grade"])
    built["seed"] = seed
    built["train"]["search"].update(
        n_calls=n_calls, n_initial_points=2, max_rounds=100, space=SPACE
    )
    return Params.model_validate(built)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, object, pd.DataFrame]:
    prepared = featurize_table(table(1000, "regression"), params(2, 42).featurize, 42)
    train = prepared.train
    target = Target.learn(train["y"], params(2, 42).train, "y")
    return train.drop(columns="y"), target.learned(train["y"], "training")[1], prepared.test


def search(data, n_calls: int, seed: int, warm: WarmStart | None = None):
    features, y, test = data
    checkpoint = Checkpoint(None, warm)
    x_test = test.drop(columns="y")
    return fit(features, y, x_test, params(n_calls, seed), checkpoint, lambda trial: None)


SEEDS = (42, 43, 44, 45, 46)


@pytest.fixture(scope="module")
def warm(data) -> WarmStart:
    """An earlier experiment with another seed (other folds): its 16 trials."""
    earlier = search(data, 16, seed=7)
    return WarmStart(
        "earlier", [t.point for t in earlier.trials], [t.score for t in earlier.trials]
    )


def test_a_warm_started_search_is_at_least_as_good_as_a_cold_one_by_the_median(data, warm):
    # each seed's 4 calls: the warm search's start from the Gaussian process fitted to the
    # earlier trials, the cold one's from its initial design; a seed fixes the folds of both
    cold = [search(data, 4, seed).best.score for seed in SEEDS]
    told = [search(data, 4, seed, warm).best.score for seed in SEEDS]
    print(f"cold {cold}\nwarm {told}")
    assert statistics.median(told) <= statistics.median(cold), (told, cold)


def test_a_warm_started_search_is_reproducible(data, warm):
    told, again = search(data, 4, 42, warm), search(data, 4, 42, warm)
    assert [t.point for t in told.trials] == [t.point for t in again.trials]
    assert portable_model_text(told.booster) == portable_model_text(again.booster)
