from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import SuiteBuildParams
from mlpipeline.quality.suite import build_suite, to_json
from mlpipeline.quality.validation import build_report, parse_suite, run_suite

BUILD = SuiteBuildParams(positive=["x"], bins=5, kl_threshold=0.05)


@pytest.fixture
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 2000
    return pd.DataFrame(
        {
            "carat": rng.lognormal(-0.5, 0.5, n).round(2),
            "cut": rng.choice(["Fair", "Good", "Ideal"], n, p=[0.1, 0.3, 0.6]),
            "x": rng.uniform(3, 9, n).round(2),
            "price": rng.integers(300, 19000, n),
        }
    )


def _kinds(suite: dict, column: str) -> list[tuple[str, str]]:
    return [
        (e["type"].removeprefix("expect_"), e["severity"])
        for e in suite["expectations"]
        if e["kwargs"].get("column") == column
    ]


def _validate(frame: pd.DataFrame, suite: dict) -> dict:
    return build_report(run_suite(frame, parse_suite(suite, "t"), 3), "t")


def test_numeric_and_categorical_columns_get_their_checks(reference):
    suite = build_suite(reference, "t", BUILD)
    assert _kinds(suite, "carat") == [
        ("column_values_to_not_be_null", "critical"),
        ("column_values_to_be_in_type_list", "critical"),
        ("column_values_to_be_between", "critical"),
        ("column_kl_divergence_to_be_less_than", "critical"),
    ]
    assert ("column_values_to_be_in_set", "critical") in _kinds(suite, "cut")
    assert ("column_values_to_be_between", "warning") in _kinds(suite, "x")
    table = [e["type"] for e in suite["expectations"] if "column" not in e["kwargs"]]
    assert "expect_table_columns_to_match_ordered_list" in table
    assert "expect_table_row_count_to_be_between" in table


def test_ranges_keep_a_margin_and_stay_non_negative(reference):
    suite = build_suite(reference, "t", BUILD)
    (carat_range,) = [
        e["kwargs"]
        for e in suite["expectations"]
        if e["kwargs"].get("column") == "carat" and e["type"].endswith("to_be_between")
    ]
    assert carat_range["min_value"] == 0.0
    assert carat_range["max_value"] > reference["carat"].max()


def test_same_data_gives_the_same_bytes(reference):
    assert to_json(build_suite(reference, "t", BUILD)) == to_json(
        build_suite(reference.copy(), "t", BUILD)
    )


def test_reference_and_its_samples_pass(reference):
    suite = build_suite(reference, "t", BUILD.model_copy(update={"row_count_range": (0.1, 2.0)}))
    assert _validate(reference, suite)["statistics"]["critical_failures"] == 0
    sample = reference.sample(1000, random_state=3)
    assert _validate(sample, suite)["statistics"]["critical_failures"] == 0


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda f: f.assign(carat=f["carat"] * 1.5), "carat"),
        (lambda f: f.assign(cut="Ideal"), "cut"),
        (lambda f: f.assign(x=np.where(np.arange(len(f)) % 10 == 0, 0.0, f["x"])), "x"),
    ],
)
def test_shifted_data_fails_on_the_right_column(reference, change, column):
    suite = build_suite(reference, "t", BUILD)
    report = _validate(change(reference), suite)
    failed = {i["kwargs"].get("column") for i in report["results"] if not i["success"]}
    assert report["statistics"]["critical_failures"] >= 1
    assert column in failed


def test_a_few_zero_sizes_only_warn(reference):
    suite = build_suite(reference, "t", BUILD)
    frame = reference.copy()
    frame.loc[0, "x"] = 0.0
    stats = _validate(frame, suite)["statistics"]
    assert (stats["critical_failures"], stats["warnings"]) == (0, 1)


def test_duplicates_warn_and_stop_only_past_a_tolerance_the_user_set(reference):
    few = pd.concat([reference, reference.head(2)], ignore_index=True)
    many = pd.concat([reference, reference.head(400)], ignore_index=True)
    warns = build_suite(reference, "t", BUILD.model_copy(update={"duplicate_tolerance": None}))
    assert _validate(many, warns)["statistics"]["critical_failures"] == 0
    assert _validate(many, warns)["statistics"]["warnings"] >= 1
    stops = build_suite(reference, "t", BUILD.model_copy(update={"duplicate_tolerance": 0.01}))
    assert _validate(few, stops)["statistics"]["critical_failures"] == 0
    assert _validate(few, stops)["statistics"]["warnings"] >= 1
    assert _validate(many, stops)["statistics"]["critical_failures"] >= 1


def test_a_column_with_a_few_missing_values_may_have_some_more():
    from mlpipeline.quality.suite import never_missing

    frame = pd.DataFrame({"a": [1.0] * 95 + [None] * 5, "b": range(100)})
    suite = build_suite(frame, "s", SuiteBuildParams(null_tolerance=0.05))
    not_null = {
        e["kwargs"]["column"]: e["kwargs"].get("mostly")
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }
    assert not_null == {"a": 0.9, "b": None}  # 5% missing, and 5% more allowed
    assert never_missing(suite) == ["b"]


def test_a_column_the_model_never_sees_is_checked_for_presence_and_missing_values_only():
    rows = 600
    frame = pd.DataFrame({"listing_id": np.arange(50_000, 50_000 + rows), "x": np.arange(rows)})
    suite = build_suite(frame, "raw", SuiteBuildParams(), unused=["listing_id"])
    kinds = {kind for kind, _ in _kinds(suite, "listing_id")}
    assert kinds and all("null" in kind for kind in kinds), kinds
    newer = frame.assign(listing_id=frame["listing_id"] + rows)  # the next listings' ids
    report = _validate(newer, suite)
    failed = [r["kwargs"] for r in report["results"] if not r["success"]]
    assert report["statistics"]["critical_failures"] == 0 and not failed, failed
