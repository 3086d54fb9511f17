"""``python -m mlpipeline monitor <batch>``: a new batch against what the model was trained on.

Runs the raw suite (without its row-count and distribution checks; the target and the dropped
columns may be there or not), then compares every model feature with the raw rows of the
training part, each input's share of missing values, and the packaged model's predictions
with its test-set predictions, by the drift rule of ``mlpipeline.quality.drift`` (sized to
the batch), and counts the category values the model was not trained on; writes
``<monitor.out_dir>/<batch>.json`` and ``.html`` and logs them to MLflow. Exit code: 0 no
drift, 1 drift (the message names the columns), 2 invalid batch (unreadable, missing columns,
wrong types, forbidden values).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_json, write_text
from mlpipeline.quality.monitoring import INVALID, drift_report, read_batch, render_html
from mlpipeline.quality.validation import findings, format_table
from mlpipeline.track.runs import stage_run


def drift_metrics(report: dict) -> dict[str, float]:
    """Each feature's, the predictions' and each input's missing share's drift statistic, and
    each categorical column's share of unseen values."""
    found = {f"drift.{d['column']}": d["value"] for d in report["features"]}
    if report["predictions"]:
        found["drift.predictions"] = report["predictions"]["value"]
    found |= {f"missing.{m['column']}": m["value"] for m in report["missing"]}
    return found | {f"unseen.{u['column']}": u["share"] for u in report["unseen"]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline monitor", description=__doc__)
    parser.add_argument("batch", help="CSV or Parquet file (path, URL or package://)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    batch = read_batch(args.batch, params.dataset, params.validate_.suite)
    out = Path(params.monitor.out_dir) / Path(args.batch).name.split(".")[0]
    inputs = {"batch": Path(args.batch)} if Path(args.batch).is_file() else {}
    with stage_run("monitor", params.monitor, inputs=inputs, pipeline=False) as run:
        report = drift_report(batch, args.batch, params)
        write_json(report, out.with_suffix(".json"))
        write_text(render_html(report), out.with_suffix(".html"))
        run.log_metrics({"exit_code": report["exit_code"], **drift_metrics(report)})
        run.log_artifact(out.with_suffix(".json"))
        run.log_artifact(out.with_suffix(".html"))
    print(format_table(findings(report["validation"])), file=sys.stderr)  # noqa: T201
    message = f"{report['verdict']}: {', '.join(report['named']) or 'nothing'} (report: {out}.html)"
    if report["exit_code"] == INVALID:
        raise PipelineError(f"monitor: {message}", exit_code=INVALID)
    print(message, file=sys.stderr)  # noqa: T201 - the command's summary
    return report["exit_code"]
