"""The drift rule's two rates, measured: a random sample of the reference rarely alarms
(at most alpha of the draws, whatever the table's size and number of columns), and a real
shift alarms (a 0.5-standard-deviation shift of one numeric column, one category's share
moved by 20 points). Draws are seeded; the rates are properties of the rule, not of a draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.features.transform import FeatureSpec
from mlpipeline.quality.drift import DriftRule, compare_missing, compare_numbers, compare_values
from mlpipeline.quality.monitoring import feature_drift, missing_drift

RULE = DriftRule()
SHARES = [0.35, 0.25, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01]


def table(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Four numeric columns (one skewed, one few-valued, one with missing values) and two
    categories (one with rare values)."""
    frame = pd.DataFrame(
        {
            "normal": rng.normal(10, 2, rows),
            "skewed": rng.lognormal(0, 1, rows),
            "count": rng.poisson(2, rows).astype(float),
            "gappy": rng.normal(0, 1, rows),
            "colour": rng.choice(list("abc"), rows, p=[0.5, 0.3, 0.2]),
            "maker": rng.choice(list("ABCDEFGH"), rows, p=SHARES),
        }
    )
    frame.loc[rng.random(rows) < 0.2, "gappy"] = np.nan
    return frame


SPEC = FeatureSpec(
    ["normal", "skewed", "count", "gappy", "colour", "maker"],
    categories={"colour": list("abc"), "maker": list("ABCDEFGH")},
)


def alarms(reference: pd.DataFrame, batch: pd.DataFrame) -> bool:
    drifts = [
        *feature_drift(reference, batch, SPEC, RULE),
        *missing_drift(reference, batch, SPEC, RULE),
    ]
    return any(d.drifted for d in drifts)


@pytest.mark.parametrize("rows", [50, 120, 400, 2000, 8000])
def test_a_random_30_percent_sample_of_the_reference_alarms_in_at_most_5_percent(rows):
    rng = np.random.default_rng(rows)
    false_alarms = 0
    for _ in range(100):
        reference = table(rows, rng)
        batch = reference.sample(frac=0.3, random_state=int(rng.integers(1 << 31)))
        false_alarms += alarms(reference, batch)
    print(f"{rows} rows: {false_alarms} false alarms in 100 samples")
    assert false_alarms <= 5


def test_a_batch_drawn_afresh_from_the_same_distribution_alarms_in_at_most_5_percent():
    """Independent draws, where the tests' significance holds exactly (a sample of the
    reference itself overlaps it, and alarms less)."""
    rng = np.random.default_rng(9)
    false_alarms = sum(alarms(table(3000, rng), table(400, rng)) for _ in range(100))
    print(f"independent 400-row batches: {false_alarms} false alarms in 100")
    assert false_alarms <= 8  # 5% expected; binomial noise over 100 draws


def test_a_half_standard_deviation_shift_of_one_column_alarms_in_a_500_row_batch():
    rng = np.random.default_rng(1)
    caught = 0
    for _ in range(50):
        reference, batch = table(5000, rng), table(500, rng)
        batch["normal"] += 0.5 * 2
        caught += alarms(reference, batch)
    print(f"0.5 sd shift, 500 rows: {caught} of 50 caught")
    assert caught >= 48


@pytest.mark.parametrize("rows", [500, 5000])
def test_one_category_share_moved_by_20_points_alarms(rows):
    rng = np.random.default_rng(2)
    caught = 0
    for _ in range(50):
        reference, batch = table(5000, rng), table(rows, rng)
        moved = batch.index[batch["colour"] == "a"]
        batch.loc[rng.choice(moved, int(0.2 * rows), replace=False), "colour"] = "b"  # a: 50 -> 30%
        caught += alarms(reference, batch)
    print(f"20-point share move, {rows} rows: {caught} of 50 caught")
    assert caught >= 48


def test_small_batches_are_tested_and_large_ones_measured():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=5000)
    assert compare_numbers("x", "numeric", reference, reference[:500], RULE, 1).method == "ks"
    assert (
        compare_numbers("x", "numeric", reference, reference[:2000], RULE, 1).method
        == "wasserstein"
    )
    letters = pd.Series(rng.choice(list("ab"), 5000))
    assert compare_values("c", "categorical", letters, letters[:500], RULE, 1).method == "chi2"
    assert compare_values("c", "categorical", letters, letters[:2000], RULE, 1).method == "linf"


def test_a_value_the_reference_never_had_is_drift_when_frequent_not_when_rare():
    reference = pd.Series(["a", "b"] * 500)
    one_new = pd.Series(["a", "b"] * 100 + ["z"])
    assert not compare_values("c", "categorical", reference, one_new, RULE, 1).drifted
    many_new = pd.Series(["a", "z"] * 100)
    assert compare_values("c", "categorical", reference, many_new, RULE, 1).drifted


def test_nothing_to_compare_is_no_drift():
    empty = np.array([np.nan, np.nan])
    found = compare_numbers("x", "numeric", np.arange(10.0), empty, RULE, 1)
    assert (found.method, found.drifted) == ("none", False)
    assert not compare_missing("x", pd.Series([1.0, 2.0]), pd.Series([3.0]), RULE, 1).drifted
