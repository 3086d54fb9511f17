from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.features.transform import FeatureSpec
from mlpipeline.quality.drift import Drift, DriftRule
from mlpipeline.quality.monitoring import (
    DRIFT,
    INVALID,
    NO_DRIFT,
    categorical_psi,
    feature_drift,
    missing_drift,
    numeric_psi,
    psi,
    suite_for_batch,
    training_rows,
    unseen_categories,
    verdict,
)


def test_psi_is_zero_for_equal_histograms_and_grows_with_change():
    same = np.array([10.0, 20.0, 30.0])
    assert psi(same, same * 3) == pytest.approx(0.0)
    assert psi(same, np.array([30.0, 20.0, 10.0])) > psi(same, np.array([12.0, 20.0, 28.0]))


def test_numeric_psi_separates_noise_from_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.lognormal(0, 0.5, 20_000)
    sample = rng.choice(reference, 2000)
    assert numeric_psi(reference, sample, 10) < 0.05
    assert numeric_psi(reference, sample * 1.3, 10) > 0.2


def test_categorical_psi_puts_unseen_values_in_their_own_bin():
    reference = pd.Series(["a", "b"] * 500)
    assert categorical_psi(reference, reference.sample(200, random_state=1)) < 0.05
    assert categorical_psi(reference, pd.Series(["a", "z"] * 100)) > 0.2


def test_missing_values_are_compared_as_a_share_not_as_values():
    reference = np.arange(1000, dtype=float)
    with_nans = np.where(np.arange(1000) % 2 == 0, np.nan, reference)
    frame = pd.DataFrame({"a": reference})
    spec = FeatureSpec(["a"])
    (values,) = feature_drift(frame, frame.assign(a=with_nans), spec, DriftRule())
    assert not values.drifted  # the values there spread the same
    (share,) = missing_drift(frame, frame.assign(a=with_nans), spec, DriftRule())
    assert share.drifted and share.kind == "missing"
    (same,) = missing_drift(frame, frame.head(100), spec, DriftRule())
    assert not same.drifted


def test_unseen_category_values_are_counted_per_column():
    spec = FeatureSpec(["maker", "size"], categories={"maker": ["audi", "bmw"]})
    batch = pd.DataFrame({"maker": ["audi", "tesla", None, "tesla"], "size": [1, 2, 3, 4]})
    (found,) = unseen_categories(batch, spec)
    assert found == {"column": "maker", "rows": 2, "share": 0.5, "examples": ["tesla"]}


SUITE = {
    "name": "s",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {
            "type": "expect_table_columns_to_match_ordered_list",
            "kwargs": {"column_list": ["a", "y"]},
        },
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "y"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_kl_divergence_to_be_less_than", "kwargs": {"column": "a"}},
    ],
}


def test_batch_suite_drops_row_counts_distributions_and_the_columns_a_batch_may_lack():
    kept = suite_for_batch(SUITE, leave_out=["y"])["expectations"]
    assert [e["type"] for e in kept] == [
        "expect_table_columns_to_match_set",  # the columns, in any order
        "expect_column_values_to_not_be_null",
    ]
    assert kept[0]["kwargs"] == {"column_set": ["a"], "exact_match": True}
    assert kept[1]["kwargs"]["column"] == "a"


def test_a_sample_of_the_training_rows_is_no_drift(tmp_path):
    """Missing values sitting mostly in rows without a target raised a false alarm once:
    the reference is the raw rows of the training part, target-less rows included."""
    rng = np.random.default_rng(3)
    n = 4000
    sales = rng.normal(100, 10, n)
    target = rng.normal(size=n)
    no_target = rng.random(n) < 0.1
    sales[no_target & (rng.random(n) < 0.8)] = np.nan  # missing mostly where the target is
    raw = pd.DataFrame({"sales": sales, "y": np.where(no_target, np.nan, target)})
    reference = training_rows(raw, 0.2, 42)
    spec = FeatureSpec(["sales"], nullable=["sales"])
    batch = raw.sample(500, random_state=1)
    drifts = feature_drift(reference, batch, spec, DriftRule())
    shares = missing_drift(reference, batch, spec, DriftRule())
    assert not any(d.drifted for d in [*drifts, *shares])


def _item(expectation: str, column: str, success: bool, severity: str = "critical") -> dict:
    return {
        "expectation": expectation,
        "kwargs": {"column": column},
        "severity": severity,
        "success": success,
        "result": {"observed_value": 1.0},
        "error": None,
    }


@pytest.mark.parametrize(
    ("items", "drifts", "expected"),
    [
        ([_item("expect_column_values_to_be_in_set", "cut", True)], [], (NO_DRIFT, [])),
        (
            [_item("expect_column_kl_divergence_to_be_less_than", "cut", False)],
            [],
            (DRIFT, ["cut"]),
        ),
        ([_item("expect_column_values_to_be_in_set", "cut", False)], [], (INVALID, ["cut"])),
        ([_item("expect_column_values_to_be_in_set", "cut", False, "warning")], [], (NO_DRIFT, [])),
        (
            [],
            [
                Drift("carat", "numeric", "ks", 0.9, 0.2, 50),
                Drift("x", "numeric", "ks", 0.01, 0.2, 50),
            ],
            (DRIFT, ["carat"]),
        ),
        (
            [],
            [Drift("x", "missing", "chi2", 9.0, 3.8, 50)],
            (DRIFT, ["x (missing share)"]),
        ),
    ],
)
def test_verdict(items, drifts, expected):
    assert verdict({"results": items}, drifts) == expected
