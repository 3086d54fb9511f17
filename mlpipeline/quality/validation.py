"""Validate a table against a Great Expectations suite and report the result.

A suite is a JSON file (``expectations/``); each expectation has a severity. A failed
``critical`` expectation stops the pipeline (``raise_on_failures``); a failed ``warning`` is
reported and counted. The report is stable (no ids or timestamps), so an unchanged result
gives unchanged bytes, and the console table names the expectation, column, severity,
observed value and example bad values with their row numbers.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import read_json, write_json, write_text
from mlpipeline.quality import html
from mlpipeline.quality.suite import CRITICAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One failed expectation, in the words of the console table."""

    expectation: str
    column: str
    severity: str
    observed: str
    examples: str


def load_suite(path: Path) -> Any:
    """Build a GX ``ExpectationSuite`` from its JSON file."""
    try:
        spec = read_json(path)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read expectation suite {path}: {exc}") from exc
    return parse_suite(spec, path)


def parse_suite(spec: dict, path: Path | str) -> Any:
    """Build a GX ``ExpectationSuite`` from its JSON form, refusing what GX would silently drop."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for index, entry in enumerate(spec.get("expectations", [])):
        try:
            config = ExpectationConfiguration(
                type=entry["type"],
                kwargs=entry.get("kwargs", {}),
                meta=entry.get("meta"),
                severity=entry.get("severity", CRITICAL),
            )
            expectations.append(config.to_domain_obj())
        except Exception as exc:  # GX raises several types for an unknown or bad expectation
            name = entry.get("type", "?") if isinstance(entry, dict) else "?"
            raise PipelineError(f"{path}: expectation #{index} ({name}) is invalid: {exc}") from exc
    if not expectations:
        raise PipelineError(f"{path}: the suite has no expectations")
    return gx.ExpectationSuite(name=spec.get("name") or Path(path).stem, expectations=expectations)


def run_suite(frame: pd.DataFrame, suite: Any, examples: int) -> dict:
    """Validate ``frame`` against ``suite`` in an in-memory GX context; return GX's result.
    The batch validates the suite itself: registering the suite and a validation definition
    in the context (which nothing reads again) took a third of the time of a small table's
    validation."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)  # sets INFO itself

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("pipeline")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("whole")
    )
    result = batch.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": examples}
    )
    return result.to_json_dict()


def build_report(result: dict, suite_path: Path | str) -> dict:
    """A stable report (no ids or timestamps), so an unchanged result gives unchanged bytes."""
    items = []
    for entry in result["results"]:
        config = entry["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
        items.append(
            {
                "expectation": config["type"],
                "kwargs": kwargs,
                "severity": config.get("severity", CRITICAL),
                "success": entry["success"],
                "result": entry["result"],
                "error": _exception_message(entry.get("exception_info") or {}),
            }
        )
    items.sort(key=lambda i: (i["success"], i["severity"] != CRITICAL, i["expectation"]))
    return {"suite": str(suite_path), "statistics": report_counts(items), "results": items}


def _exception_message(info: dict) -> str | None:
    """GX reports an exception either flat or keyed by the metric that raised it."""
    if "exception_message" in info:
        return info["exception_message"]
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    return next((m for m in messages if m), None)


def report_counts(items: list[dict]) -> dict:
    failed = [i for i in items if not i["success"]]
    return {
        "evaluated": len(items),
        "passed": len(items) - len(failed),
        "critical_failures": sum(i["severity"] == CRITICAL for i in failed),
        "warnings": sum(i["severity"] != CRITICAL for i in failed),
        "success_percent": round(100.0 * (len(items) - len(failed)) / max(len(items), 1), 2),
    }


def findings(report: dict) -> list[Finding]:
    """The failed expectations, as rows for the console table."""
    return [finding(item) for item in report["results"] if not item["success"]]


def finding(item: dict) -> Finding:
    kwargs, result = item["kwargs"], item["result"]
    column = kwargs.get("column") or "(table)"
    if item["expectation"] == "expect_compound_columns_to_be_unique":
        column = (
            "(all columns)" if len(kwargs["column_list"]) > 3 else ", ".join(kwargs["column_list"])
        )
    observed = _clip(_observed(item))
    values = result.get("partial_unexpected_list") or []
    rows = result.get("partial_unexpected_index_list") or []
    examples = ", ".join(
        f"row {r}: {_clip(str(v), 40)}" for r, v in zip(rows, values, strict=False)
    )
    if values and not rows:
        examples = ", ".join(_clip(str(v), 40) for v in values)
    return Finding(item["expectation"], column, item["severity"], observed, examples)


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


RESULT_WORDS = {"fail": "FAILED", "warn": "failed (warning)", "pass": "passed"}


def render_html(report: dict, title: str) -> str:
    """The report as a page: every expectation, failures first, each with its result in words
    (and colour)."""
    rows = []
    for item in report["results"]:
        row = finding(item)
        status = "pass" if item["success"] else ("fail" if item["severity"] == CRITICAL else "warn")
        result = {"status": status, "result": RESULT_WORDS[status]}
        rows.append({**result, **asdict(row), "observed": _observed(item)})
    return html.render(title, {"suite": report["suite"], **report["statistics"]}, rows, "status")


def _observed(item: dict) -> str:
    result = item["result"]
    if item["expectation"].startswith("expect_table_columns_to_match") and not item["success"]:
        return _column_mismatch(item["kwargs"], result.get("observed_value") or [])
    if item["error"]:
        first_line = item["error"].splitlines()[0].removeprefix("Error: ")
        return "error: " + first_line.replace(" in BatchData", "")
    if "unexpected_count" in result:
        share = result.get("unexpected_percent") or 0.0  # None when every value is null
        return f"{result['unexpected_count']} bad rows ({share:.3g}%)"
    return _clip(str(result.get("observed_value")), 200)


def _column_mismatch(kwargs: dict, observed: list[str]) -> str:
    """Which columns are missing, unexpected or out of order."""
    expected = kwargs.get("column_list") or kwargs.get("column_set") or []
    missing = [c for c in expected if c not in observed]
    extra = [c for c in observed if c not in expected]
    parts = [f"missing: {', '.join(missing)}"] if missing else []
    parts += [f"unexpected: {', '.join(map(str, extra))}"] if extra else []
    if not parts:
        parts = [f"order differs: {', '.join(map(str, observed))}"]
    return "; ".join(parts)


def format_table(rows: list[Finding]) -> str:
    """A plain-text table, one line per failed expectation."""
    if not rows:
        return "all expectations passed"
    headers = list(Finding.__dataclass_fields__)
    cells = [headers] + [list(asdict(r).values()) for r in rows]
    widths = [min(max(len(c[i]) for c in cells), 70) for i in range(len(headers))]
    lines = ["  ".join(c[i][:70].ljust(widths[i]) for i in range(len(headers))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def suite_columns(spec: dict) -> list[str]:
    """The columns a suite describes: its column-list expectation, or the columns named."""
    for entry in spec["expectations"]:
        kwargs = entry.get("kwargs", {})
        if "column_list" in kwargs and entry["type"].startswith("expect_table_columns"):
            return list(kwargs["column_list"])
        if "column_set" in kwargs:
            return list(kwargs["column_set"])
    return sorted({e["kwargs"]["column"] for e in spec["expectations"] if "column" in e["kwargs"]})


def check_suite_fits(suite_path: Path, columns: list[str], key: str) -> None:
    """Stop with the key to change when the suite describes another table (fewer than half of
    the columns in common) — one missing column is the data's fault, and the report's."""
    described = suite_columns(read_json(suite_path))
    common = set(described) & set(columns)
    if 2 * len(common) < max(len(described), len(columns)):
        raise PipelineError(
            f"{key} = {suite_path} describes {len(described)} columns, the data has "
            f"{len(columns)} ({len(common)} in common): it was built for other data. Run "
            "`python -m mlpipeline init`, or rebuild it with `python -m mlpipeline build-suite` "
            "(docs/validation.md)"
        )


@dataclass(frozen=True)
class ReportPaths:
    """Where a validation writes its report: JSON (full), HTML (for people), metrics."""

    json: Path
    html: Path
    metrics: Path

    def files(self) -> list[Path]:
        return [self.json, self.html, self.metrics]


def validate(frame: pd.DataFrame, suite_path: Path, examples: int) -> dict:
    """The stable report of ``frame`` against the suite at ``suite_path``."""
    return build_report(run_suite(frame, load_suite(suite_path), examples), suite_path)


def write_report(report: dict, paths: ReportPaths, title: str) -> None:
    """Write the report, its page and its counts (the metrics DVC shows)."""
    write_json(report, paths.json)
    write_text(render_html(report, title), paths.html)
    write_json(report["statistics"], paths.metrics)


def raise_on_failures(report: dict, what: str, paths: ReportPaths) -> None:
    """Print the failures' table; stop (``PipelineError``) on a critical failure."""
    counts = report["statistics"]
    log.info("validation of %s:\n%s", what, format_table(findings(report)))
    if counts["critical_failures"]:
        raise PipelineError(
            f"validation failed: {counts['critical_failures']} critical expectation(s) of "
            f"{counts['evaluated']} failed on {what} (see the table above; full report in "
            f"{paths.json} and {paths.html})"
        )
    log.info(
        "%d of %d expectations passed, %d warning(s); report in %s",
        counts["passed"],
        counts["evaluated"],
        counts["warnings"],
        paths.html,
    )
