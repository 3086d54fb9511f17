"""Stage ``validate``: run a Great Expectations suite (JSON in ``expectations/``) on a table.

``python -m stages.validate check`` validates one table, or several (``--data NAME=PATH``)
stacked with a column naming where each row came from. Each expectation has a severity. A
failed ``critical`` expectation stops the pipeline (exit 1, so DVC runs nothing downstream); a
failed ``warning`` is reported and counted, and the pipeline goes on. Either way it writes a
JSON report, an HTML report and metrics, and prints a short table of the failures.

``python -m stages.validate build-suite`` writes a suite from a trusted reference table (see
``stages.suite``).
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

from stages import cli, html_report
from stages.errors import StageError
from stages.files import read_json, write_json, write_text
from stages.ingest import read_table, resolve_source, source_format
from stages.params import Params, ValidateParams, load_params
from stages.suite import build_suite, to_json
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
    """Build a GX ``ExpectationSuite`` from its JSON file."""
    try:
        spec = read_json(path)
    except (OSError, ValueError) as exc:
        raise StageError(f"cannot read expectation suite {path}: {exc}") from exc
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


def render_html(report: dict, title: str) -> str:
    """The report as a page: every expectation, failures first."""
    rows = []
    for item in report["results"]:
        row = finding(item)
        status = "pass" if item["success"] else ("fail" if item["severity"] == CRITICAL else "warn")
        rows.append({"status": status, **asdict(row), "observed": _observed(item)})
    return html_report.render(
        title, {"suite": report["suite"], **report["statistics"]}, rows, "status"
    )


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


def read_inputs(specs: Sequence[str], label: str) -> pd.DataFrame:
    """Read ``PATH`` or several ``NAME=PATH`` tables; several are stacked, with ``label`` naming
    each row's table. A path may be anything ``ingest`` reads (Parquet, CSV, package://, URL)."""
    named = [spec.split("=", 1) if "=" in spec else ["", spec] for spec in specs]
    frames = []
    for name, source in named:
        location = resolve_source(source)
        frame = read_table(location, source_format(location, "auto"), {})
        frames.append(frame.assign(**{label: name}) if len(named) > 1 else frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_inputs_partitioned(specs: Sequence[str], label: str) -> Any:
    """``read_inputs`` for ``engine: dask``: Parquet files or partitioned directories, lazily."""
    import dask.dataframe as dd

    from stages import engine

    named = [spec.split("=", 1) if "=" in spec else ["", spec] for spec in specs]
    frames = []
    for name, source in named:
        if not Path(source).exists():
            raise StageError(f"validate: {source} does not exist")
        frame = engine.read_parquet(source)
        frames.append(frame.assign(**{label: name}) if len(named) > 1 else frame)
    return dd.concat(frames) if len(frames) > 1 else frames[0]


def validation_result(args: argparse.Namespace, params: Params, suite: Any) -> dict:
    """GX's result for the tables named by ``--data``: whole, or per partition on Dask."""
    examples = params.validate_.result_examples
    if params.engine != "dask":
        return run_suite(read_inputs(args.data, args.label), suite, examples)
    from stages import engine
    from stages.validate_partitions import validate_partitioned

    with engine.dask_client(params.dask):
        frame = read_inputs_partitioned(args.data, args.label)
        return validate_partitioned(frame, read_json(args.suite), examples)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate tables against a suite")
    check.add_argument("--data", action="append", required=True, metavar="[NAME=]PATH")
    check.add_argument("--suite", type=Path, required=True, help="expectation suite JSON")
    check.add_argument("--report", type=Path, required=True, help="JSON report to write")
    check.add_argument("--html", type=Path, required=True, help="HTML report to write")
    check.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    build = commands.add_parser("build-suite", help="write a suite from a trusted reference")
    build.add_argument("--reference", action="append", required=True, metavar="[NAME=]PATH")
    build.add_argument("--out", type=Path, required=True, help="suite JSON to write")
    for sub in (check, build):
        sub.add_argument("--label", default="split", help="column naming each --data table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    params = load_params(args.params)
    if args.command == "build-suite":
        return build_suite_file(args, params.validate_)
    return check(args, params)


def build_suite_file(args: argparse.Namespace, params: ValidateParams) -> int:
    frame = read_inputs(args.reference, args.label)
    suite = build_suite(frame, args.out.stem, params.build)
    parse_suite(suite, args.out)  # refuse to write what would not load
    write_text(to_json(suite), args.out)
    log.info("wrote %d expectations to %s", len(suite["expectations"]), args.out)
    return 0


def check(args: argparse.Namespace, all_params: Params) -> int:
    params = all_params.validate_
    sources = {f"data.{i}": Path(s.split("=", 1)[-1]) for i, s in enumerate(args.data)}
    inputs = {k: p for k, p in {"suite": args.suite, **sources}.items() if p.exists()}
    with stage_run(f"validate {args.suite.stem}", params, inputs=inputs) as run:
        suite = load_suite(args.suite)
        report = build_report(validation_result(args, all_params, suite), args.suite)
        counts = report["statistics"]
        write_json(report, args.report)
        write_text(render_html(report, f"Validation: {args.suite.name}"), args.html)
        write_json(counts, args.metrics)
        run.log_metrics(counts)
        run.log_artifact(args.report)
        run.log_artifact(args.html)
        print(format_table(findings(report)), file=sys.stderr)  # noqa: T201 - the stage's summary
        if counts["critical_failures"]:
            raise StageError(
                f"validation failed: {counts['critical_failures']} critical expectation(s) of "
                f"{counts['evaluated']} failed on {', '.join(args.data)} (see the table above; "
                f"full report in {args.report} and {args.html})"
            )
        log.info(
            "%d of %d expectations passed, %d warning(s); report in %s",
            counts["passed"],
            counts["evaluated"],
            counts["warnings"],
            args.html,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
