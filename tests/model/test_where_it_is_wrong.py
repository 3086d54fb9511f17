"""Where the model is wrong, trained by the library's own functions on tables with a known
weak spot: the segment report covers every value and the top numeric ranges, and names the
weak spot as the worst segment; the worst predictions come from it; the contributions the
importance is measured by point at the driver. For regression, binary and multiclass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import Params
from mlpipeline.features.prepare import featurize_table
from mlpipeline.model.search import Checkpoint
from mlpipeline.model.training import Target, fit, results
from tests.helpers import make_params

SHOPS = ["Main St.", "harbour", "airport"]


def table(rows: int, task: str, seed: int = 0) -> pd.DataFrame:
    """``size`` drives the target; at the airport the target is mostly noise."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, rows)
    shop = rng.choice(SHOPS, rows)
    noisy = shop == "airport"
    signal = 2.0 * size + np.where(noisy, rng.normal(0, 8.0, rows), rng.normal(0, 0.5, rows))
    frame = pd.DataFrame({"size": size, "shop": shop, "noise": rng.normal(size=rows)})
    if task == "regression":
        return frame.assign(y=signal)
    if task == "binary":
        return frame.assign(y=np.where(signal > 10, "big", "small"))
    return frame.assign(
        y=pd.cut(signal, [-np.inf, 7, 13, np.inf], labels=["s", "m", "l"]).astype(str)
    )


@pytest.fixture(scope="module", params=["regression", "binary", "multiclass"])
def trained(request):
    task = request.param
    built = make_params("table.csv", "y", ["size", "shop", "noise"], ["shop"], task)
    built["train"]["search"].update(n_calls=3, max_rounds=200)
    params = Params.model_validate(built)
    prepared = featurize_table(table(3000, task), params.featurize, params.seed)
    train, test = prepared.train, prepared.test
    target = Target.learn(train["y"], params.train, "y")
    fitted = fit(
        train.drop(columns="y"), target.learned(train["y"], "training")[1],
        test.drop(columns="y"), params, Checkpoint(None), lambda trial: None,
    )  # fmt: skip
    actual = (target.learned(train["y"], "training")[0], target.learned(test["y"], "test")[0])
    return task, results(fitted, target, actual, test, prepared.spec), test


def test_every_value_and_the_top_numeric_ranges_are_covered(trained):
    _, written, test = trained
    segments = written.slices["segments"]
    assert sorted(segments["shop"]) == sorted(SHOPS)
    assert len(segments["size"]) == 5  # quintiles of the most important numeric feature
    assert sum(entry["rows"] for entry in segments["size"].values()) == len(test)
    assert "slices.csv" in written.plots and len(written.plots["slices.csv"]) >= 8


def test_the_noisy_shop_is_the_worst_segment_and_holds_the_worst_predictions(trained):
    _, written, _ = trained
    assert written.slices["worst"]["segment"] == "shop = airport"
    assert written.slices["worst"]["ratio"] > 1.2
    worst_shops = [record["features"]["shop"] for record in written.worst]
    assert worst_shops.count("airport") >= len(worst_shops) // 2


def test_the_importance_by_contributions_ranks_the_driver_first(trained):
    _, written, _ = trained
    importance = written.plots["importance.csv"].set_index("feature")
    sizes = importance["mean_abs_contribution"]
    assert sizes.idxmax() == "size" and sizes["noise"] < sizes["size"] / 5
