from __future__ import annotations

import json

import pytest

from mlpipeline.core import cli
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import read_named
from mlpipeline.quality.validation import (
    build_report,
    findings,
    format_table,
    load_suite,
    render_html,
    run_suite,
)
from stages import validate as validate_stage
from tests.helpers import make_params, write_params

SUITE = {
    "name": "tiny",
    "expectations": [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {
                "column_set": [
                    "carat",
                    "clarity",
                    "color",
                    "cut",
                    "depth",
                    "price",
                    "table",
                    "x",
                    "y",
                    "z",
                ],
                "exact_match": True,
            },
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "carat", "min_value": 0.1, "max_value": 5},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "cut", "value_set": ["Good", "Ideal", "Premium", "Very Good"]},
        },
        {
            "type": "expect_column_values_to_be_between",
            "severity": "warning",
            "kwargs": {"column": "x", "min_value": 0, "strict_min": True},
        },
    ],
}


@pytest.fixture
def suite_path(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(SUITE))
    return path


def _report(frame, suite_path):
    return build_report(run_suite(frame, load_suite(suite_path), 3), suite_path)


def test_clean_data_passes_with_a_warning(raw_frame, suite_path):
    report = _report(raw_frame, suite_path)
    assert report["statistics"] == {
        "evaluated": 4,
        "passed": 3,
        "critical_failures": 0,
        "warnings": 1,
        "success_percent": 75.0,
    }
    (finding,) = findings(report)
    assert (finding.column, finding.severity) == ("x", "warning")
    assert "row 5: 0.0" in finding.examples


def test_bad_values_are_critical_and_named(raw_frame, suite_path):
    frame = raw_frame.copy()
    frame.loc[2, "cut"] = "Martian"
    frame.loc[1, "carat"] = 99.0
    report = _report(frame, suite_path)
    assert report["statistics"]["critical_failures"] == 2
    table = format_table(findings(report))
    assert "Martian" in table and "row 2" in table
    assert "99.0" in table and "carat" in table


def test_missing_column_is_reported_not_raised(raw_frame, suite_path):
    report = _report(raw_frame.drop(columns=["carat"]), suite_path)
    failed = {(f.expectation, f.column): f for f in findings(report)}
    assert report["statistics"]["critical_failures"] == 2
    assert "does not exist" in failed[("expect_column_values_to_be_between", "carat")].observed


def test_report_is_stable(raw_frame, suite_path):
    assert _report(raw_frame, suite_path) == _report(raw_frame, suite_path)


def test_html_report_lists_every_expectation_failures_first(raw_frame, suite_path):
    page = render_html(_report(raw_frame.assign(cut="<Martian>"), suite_path), "t")
    assert page.count("<tr class=") == 4  # one row per expectation
    assert page.index('class="fail"') < page.index('class="pass"')
    assert "&lt;Martian&gt;" in page and "<Martian>" not in page


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "x"}},
            "#0 (expect_column_values_to_be_purple)",
        ),
        (
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "x"},
                "severity": "fatal",
            },
            "#0",
        ),
    ],
)
def test_unknown_or_bad_expectations_are_refused(tmp_path, entry, message):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "s", "expectations": [entry]}))
    with pytest.raises(PipelineError) as err:
        load_suite(path)
    assert message in str(err.value)


def test_main_stops_with_exit_1_and_a_report(tmp_path, raw_frame, suite_path, mlflow_store, capsys):
    data = tmp_path / "raw.parquet"
    raw_frame.assign(cut="Martian").to_parquet(data)
    report, metrics, page = tmp_path / "r.json", tmp_path / "m.json", tmp_path / "r.html"
    params = write_params(tmp_path / "params.yaml", make_params(str(data), "price", ["carat"]))
    argv = [
        "--params",
        str(params),
        "--data",
        str(data),
        "--suite",
        str(suite_path),
        "--report",
        str(report),
        "--html",
        str(page),
        "--metrics",
        str(metrics),
    ]
    assert cli.run(validate_stage.main, argv) == 1
    err = capsys.readouterr().err
    assert "error: validation failed: 1 critical expectation(s) of 4" in err
    assert "Traceback" not in err
    assert json.loads(metrics.read_text())["critical_failures"] == 1
    assert json.loads(report.read_text())["results"][0]["kwargs"]["column"] == "cut"
    assert "<td>Martian" in page.read_text() or "Martian" in page.read_text()


def test_several_inputs_are_stacked_with_a_label(tmp_path, raw_frame):
    raw_frame.head(4).to_parquet(tmp_path / "a.parquet")
    raw_frame.tail(2).to_csv(tmp_path / "b.csv", index=False)
    frame = read_named([f"train={tmp_path / 'a.parquet'}", f"test={tmp_path / 'b.csv'}"], "split")
    assert frame["split"].tolist() == ["train"] * 4 + ["test"] * 2
    assert read_named([str(tmp_path / "a.parquet")], "split").columns.tolist() == list(raw_frame)
