"""Stage ``validate``: run a Great Expectations suite (JSON in ``expectations/``) on a table.

Each expectation has a severity. A failed ``critical`` expectation stops the pipeline (exit 1,
so DVC runs nothing downstream); a failed ``warning`` is reported and counted, and the pipeline
goes on. Either way the stage writes a JSON report and prints a short table of the failures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stages import cli
from stages.errors import StageError
from stages.files import read_json, write_json
from stages.params import ValidateParams, load_params
from stages.tracking import stage_run

log = logging.getLogger(__name__)

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One failed expectation, in the words of the console table."""

    expectation: str
    column: str
    severity: str
    observed: str
    examples: str


def load_suite(path: Path) -> Any:
    """Build a GX ``ExpectationSuite`` from JSON, refusing anything GX would silently drop."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    try:
        spec = read_json(path)
    except (OSError, ValueError) as exc:
        raise StageError(f"cannot read expectation suite {path}: {exc}") from exc
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
            raise StageError(f"{path}: expectation #{index} ({name}) is invalid: {exc}") from exc
    if not expectations:
        raise StageError(f"{path}: the suite has no expectations")
    return gx.ExpectationSuite(name=spec.get("name") or Path(path).stem, expectations=expectations)


def run_suite(frame: pd.DataFrame, suite: Any, examples: int) -> dict:
    """Validate ``frame`` against ``suite`` in an in-memory GX context; return GX's result."""
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
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validate", data=batch, suite=context.suites.add(suite))
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": examples},
    )
    return result.to_json_dict()


def build_report(result: dict, suite_path: Path) -> dict:
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
    return [_finding(item) for item in report["results"] if not item["success"]]


def _finding(item: dict) -> Finding:
    kwargs, result = item["kwargs"], item["result"]
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or "(table)"
    if item["error"]:
        observed = f"error: {item['error'].splitlines()[0]}"
    elif "unexpected_count" in result:
        observed = f"{result['unexpected_count']} bad rows ({result['unexpected_percent']:.3g}%)"
    else:
        observed = _clip(str(result.get("observed_value")))
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


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="Parquet table to validate")
    parser.add_argument("--suite", type=Path, required=True, help="expectation suite JSON")
    parser.add_argument("--report", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    params: ValidateParams = load_params(args.params).validate_
    suite = load_suite(args.suite)
    frame = pd.read_parquet(args.data)
    with stage_run("validate", params, inputs={"raw": args.data, "suite": args.suite}) as run:
        report = build_report(run_suite(frame, suite, params.result_examples), args.suite)
        counts = report["statistics"]
        write_json(report, args.report)
        write_json(counts, args.metrics)
        run.log_metrics(counts)
        run.log_artifact(args.report)
        print(format_table(findings(report)), file=sys.stderr)  # noqa: T201 - the stage's summary
        if counts["critical_failures"]:
            raise StageError(
                f"validation failed: {counts['critical_failures']} critical expectation(s) of "
                f"{counts['evaluated']} failed on {args.data}; full report in {args.report}"
            )
        log.info(
            "%d of %d expectations passed, %d warning(s); report in %s",
            counts["passed"],
            counts["evaluated"],
            counts["warnings"],
            args.report,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
