"""``python -m mlpipeline rollout-report``: the challenger against the champion, live.

Reads the router's prediction log (``rollout.log_dir``, or ``--log-dir``) from ``--since`` (a
duration such as ``24h`` or an ISO 8601 time), keeps its latest rollout (the last
champion/challenger pair), and reports how often the two agree, the PSI of the challenger's
predictions against the champion's, the drift of the live inputs against the training rows
(as ``monitor`` measures it), and, given ``--outcomes FILE`` (CSV or Parquet: ``request_id``
and ``outcome`` — or a column named as the target), both models' live metrics with bootstrap
intervals. It recommends ``promote``, ``keep watching`` or ``roll back`` by the thresholds of
``rollout.report``, writes ``rollout.md``, ``rollout.json`` and PNG charts to
``rollout.report.out_dir``, logs them to MLflow (a run tagged ``pipeline.role = rollout``) and
prints the commands that act on the recommendation (``python -m mlpipeline registry promote
--from-report …`` or ``registry rollback --from-report …``). Exit code 0 whatever it
recommends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlpipeline.core.config import Params, load_params
from mlpipeline.data.io import read_source
from mlpipeline.data.names import SPEC_FILE
from mlpipeline.features.transform import FeatureSpec
from mlpipeline.quality.monitoring import training_rows
from mlpipeline.serve.rollout_report import (
    next_steps,
    outcome_frame,
    read_rollout_log,
    report_metrics,
    since_time,
    summarize,
    write_report,
)
from mlpipeline.track.runs import ROLE_TAG, stage_run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipeline rollout-report", description=__doc__
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--since", help="a duration back from now (30m, 24h, 7d) or a time")
    parser.add_argument("--outcomes", help="CSV or Parquet: request_id and outcome columns")
    parser.add_argument("--log-dir", type=Path, help="the log folder (default rollout.log_dir)")
    return parser.parse_args(argv)


def training(params: Params) -> tuple[pd.DataFrame | None, FeatureSpec | None]:
    """The raw rows of the training part and the feature spec, if this workspace has them."""
    raw, spec = Path(params.monitor.raw), Path(params.monitor.features_dir) / SPEC_FILE
    if not raw.exists() or not spec.exists():
        return None, None
    rows = training_rows(pd.read_parquet(raw), params.featurize.test_size, params.seed)
    return rows, FeatureSpec.from_json(spec)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    found, frame = read_rollout_log(
        args.log_dir or Path(params.rollout.log_dir), since_time(args.since)
    )
    outcomes = None
    if args.outcomes:
        outcomes = outcome_frame(read_source(args.outcomes), params.dataset.target)
    out_dir = Path(params.rollout.report.out_dir)
    inputs = (
        {"outcomes": Path(args.outcomes)} if args.outcomes and Path(args.outcomes).is_file() else {}
    )
    with stage_run("rollout-report", params.rollout, inputs=inputs, pipeline=False) as run:
        summary = summarize(found, frame, outcomes, training(params), params)
        write_report(summary, frame, out_dir)
        run.set_tags(
            {
                ROLE_TAG: "rollout",
                "rollout.recommendation": summary["recommendation"],
                "rollout.model": summary["model"],
                "rollout.champion": summary["champion"],
                "rollout.challenger": summary["challenger"] or "",
            }
        )
        run.log_metrics(report_metrics(summary))
        run.log_artifact(out_dir, "rollout")
    steps = next_steps(summary["recommendation"], out_dir / "rollout.json")
    lines = [f"{summary['recommendation']}: {'; '.join(summary['reasons'])}"]
    lines += [f"  {step}" for step in steps] + [f"report: {out_dir / 'rollout.md'}"]
    print("\n".join(lines), file=sys.stderr)  # noqa: T201 - the command's summary
    return 0
