"""Stage ``validate``: check the raw table against its Great Expectations suite.

A failed ``critical`` expectation stops the pipeline (exit 1, so DVC runs nothing
downstream); a failed ``warning`` is reported and counted, and the pipeline goes on. Either
way it writes a JSON report, an HTML report and metrics, and prints the failures' table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core import cli
from mlpipeline.core.config import load_params
from mlpipeline.data.names import RAW_DATASET
from mlpipeline.engine.validate import open_engine
from mlpipeline.quality.validation import (
    ReportPaths,
    build_report,
    check_suite_fits,
    raise_on_failures,
    write_report,
)
from mlpipeline.track.runs import stage_run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="the raw table")
    parser.add_argument("--suite", type=Path, required=True, help="expectation suite JSON")
    parser.add_argument("--report", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--html", type=Path, required=True, help="HTML report to write")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    return parser.parse_args(argv)


def table_columns(path: Path) -> list[str]:
    """The columns of a Parquet table (a file, or a folder of parts with engine: dask)."""
    import pyarrow.parquet as pq

    return pq.ParquetDataset(path).schema.names


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    paths = ReportPaths(args.report, args.html, args.metrics)
    inputs = {"suite": args.suite, "data.0": args.data}
    with stage_run("validate", params.validate_, inputs=inputs) as run:
        run.log_dataset(RAW_DATASET, args.data, "validation")
        check_suite_fits(args.suite, table_columns(args.data), "validate.suite")
        with open_engine(params) as engine:
            examples = params.validate_.result_examples
            result = engine.validate([str(args.data)], "split", args.suite, examples)
        report = build_report(result, args.suite)
        write_report(report, paths, f"Validation: {args.suite.name}")
        run.log_metrics(report["statistics"])
        run.log_artifact(args.report)
        run.log_artifact(args.html)
        raise_on_failures(report, str(args.data), paths)
    return 0


if __name__ == "__main__":
    cli.finish(cli.run(main))
