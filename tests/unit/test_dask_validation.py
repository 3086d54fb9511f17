"""A suite checked per partition and merged gives the whole-table verdicts and figures."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import SuiteBuildParams
from mlpipeline.dask.validation import split_suite, validate_partitioned
from mlpipeline.quality.suite import build_suite
from mlpipeline.quality.validation import build_report, parse_suite, run_suite


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.lognormal(0, 0.5, rows).round(2),
            "grade": rng.choice(["A", "B", "C"], rows, p=[0.5, 0.3, 0.2]),
            "width": rng.uniform(1, 5, rows).round(2),
            "price": rng.integers(100, 1000, rows),
        }
    )


@pytest.fixture(scope="module")
def suite() -> dict:
    params = SuiteBuildParams(positive=["width"], duplicate_tolerance=0.01)
    return build_suite(_table(3000, seed=0), "tiny", params)


def _defective() -> pd.DataFrame:
    """Zero widths (a warning), a missing grade, a drifted size and duplicates that sit in
    different partitions."""
    frame = _table(2000, seed=1)
    frame.loc[[5, 1500], "width"] = 0.0
    frame.loc[700, "grade"] = None
    frame.loc[1000:1300, "size"] = frame.loc[1000:1300, "size"] * 3
    frame.loc[1900:1919] = frame.loc[10:29].to_numpy()
    return frame


def _verdicts(report: dict) -> dict:
    figures = {}
    for item in report["results"]:
        result = item["result"]
        key = (item["expectation"], str(sorted(item["kwargs"].items())))
        observed = result.get("observed_value")
        figures[key] = (
            item["success"],
            result.get("unexpected_count"),
            result.get("element_count"),
            round(observed, 9) if isinstance(observed, float) else observed,
        )
    return figures


@pytest.mark.parametrize("gx_rows", [250_000, 300])
def test_merged_partitions_match_the_whole_table(suite, gx_rows, monkeypatch):
    monkeypatch.setattr("mlpipeline.dask.validation.GX_ROWS", gx_rows)  # 300: slices too
    frame = _defective()
    whole = build_report(run_suite(frame, parse_suite(suite, "tiny"), 5), "tiny")
    with dask.config.set(scheduler="synchronous"):
        merged = validate_partitioned(dd.from_pandas(frame, npartitions=4), suite, 5)
    report = build_report(merged, "tiny")
    assert report["statistics"] == whole["statistics"]
    assert whole["statistics"]["critical_failures"] > 0  # the drift and the null are caught
    assert _verdicts(report) == _verdicts(whole)


def test_example_rows_are_numbered_in_the_whole_table(suite):
    frame = _defective()
    with dask.config.set(scheduler="synchronous"):
        merged = validate_partitioned(dd.from_pandas(frame, npartitions=4), suite, 5)
    widths = next(
        r
        for r in merged["results"]
        if r["expectation_config"]["kwargs"].get("column") == "width"
        and "unexpected_count" in r["result"]
        and r["result"]["unexpected_count"]
    )
    assert widths["result"]["partial_unexpected_index_list"] == [5, 1500]
    repeats = next(
        r
        for r in merged["results"]
        if r["expectation_config"]["type"] == "expect_compound_columns_to_be_unique"
    )
    assert repeats["result"]["unexpected_count"] == 40
    assert repeats["result"]["partial_unexpected_index_list"] == [10, 11, 12, 13, 14]


def test_each_expectation_has_one_way_of_being_evaluated(suite):
    groups = split_suite(suite)
    assert sum(len(g) for g in groups.values()) == len(suite["expectations"])
    assert {e["type"] for e in groups["unique"]} == {"expect_compound_columns_to_be_unique"}
    assert {e["type"] for e in groups["metrics"]} == {
        "expect_table_row_count_to_be_between",
        "expect_column_kl_divergence_to_be_less_than",
    }
