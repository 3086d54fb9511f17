from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.monitoring import (
    DRIFT,
    INVALID,
    NO_DRIFT,
    Drift,
    categorical_psi,
    numeric_psi,
    psi,
    suite_for_batch,
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


def test_numeric_psi_counts_missing_values():
    reference = np.arange(1000, dtype=float)
    with_nans = np.where(np.arange(1000) % 2 == 0, np.nan, reference)
    assert numeric_psi(reference, with_nans, 10) > 0.2


def test_categorical_psi_puts_unseen_values_in_their_own_bin():
    reference = pd.Series(["a", "b"] * 500)
    assert categorical_psi(reference, reference.sample(200, random_state=1)) < 0.05
    assert categorical_psi(reference, pd.Series(["a", "z"] * 100)) > 0.2


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
    ],
}


def test_batch_suite_drops_row_counts_and_the_target():
    kept = suite_for_batch(SUITE, target="y")["expectations"]
    assert [e["type"] for e in kept] == [
        "expect_table_columns_to_match_ordered_list",
        "expect_column_values_to_not_be_null",
    ]
    assert kept[0]["kwargs"]["column_list"] == ["a"]
    assert kept[1]["kwargs"]["column"] == "a"


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
            [Drift("carat", "numeric", 0.9, 0.2), Drift("x", "numeric", 0.01, 0.2)],
            (DRIFT, ["carat"]),
        ),
    ],
)
def test_verdict(items, drifts, expected):
    assert verdict({"results": items}, drifts) == expected
