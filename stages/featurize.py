"""Stage ``featurize``: clean the validated table, split it, build the model features, and
check them against the features suite before writing them.

Cleaning follows params (``featurize.drop_duplicates``, ``featurize.row_filters``); each
row's part follows a seeded hash of its values (``featurize.test_size``, ``seed``); features
come from the same function the packaged model runs. The train and test features are
validated together (stacked, with a ``split`` column) against ``validate.features_suite``:
the stage either writes validated features or stops with the report, writing none. Which
inputs the model accepts missing follows the raw suite (``validate.suite``): those it does not
declare never null.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core import cli
from mlpipeline.core.config import Params, load_params
from mlpipeline.data.io import atomic_dir, read_json, write_json
from mlpipeline.data.names import (
    RAW_DATASET,
    SPEC_FILE,
    TEST_DATASET,
    TEST_FILE,
    TRAIN_DATASET,
    TRAIN_FILE,
)
from mlpipeline.engine.featurize import Featurize, open_engine
from mlpipeline.quality.suite import never_missing
from mlpipeline.quality.validation import (
    ReportPaths,
    build_report,
    check_suite_fits,
    raise_on_failures,
    write_report,
)
from mlpipeline.track.runs import StageRun, stage_run

log = logging.getLogger(__name__)
SPLIT_LABEL = "split"  # the column naming each row's part in the features suite


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="validated Parquet table")
    parser.add_argument("--out-dir", type=Path, required=True, help="train/test/spec go here")
    parser.add_argument("--metrics", type=Path, required=True, help="row counts JSON")
    parser.add_argument("--suite", type=Path, required=True, help="features suite JSON")
    parser.add_argument(
        "--raw-suite", type=Path, required=True, help="raw suite: what may be missing"
    )
    parser.add_argument("--report", type=Path, required=True, help="validation JSON report")
    parser.add_argument("--html", type=Path, required=True, help="validation HTML report")
    parser.add_argument("--report-metrics", type=Path, required=True, help="validation counts")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    logged = {"featurize": params.featurize, "seed": params.seed}
    inputs = {"raw": args.data, "suite": args.suite}
    never = never_missing(read_json(args.raw_suite))
    with stage_run("featurize", logged, inputs=inputs) as run, open_engine(params) as engine:
        run.log_dataset(RAW_DATASET, args.data, "raw")
        with atomic_dir(args.out_dir) as staging:  # replaces out_dir only if the checks pass
            counts = engine.featurize(params.featurize, params.seed, args.data, staging, never)
            report = check_features(engine, params, args, staging)
            run.log_metrics({**counts, "validation": report["statistics"]})
            run.log_artifact(args.report)
            run.log_artifact(args.html)
            raise_on_failures(report, "the train and test features", paths_of(args))
        features = counts.pop("features")
        write_json(counts, args.metrics)
        run.log_artifact(args.out_dir / SPEC_FILE)
        log_features(run, args.out_dir, params.featurize.target)
    log.info(
        "%d train, %d test rows; %d features", counts["train_rows"], counts["test_rows"], features
    )
    return 0


def log_features(run: StageRun, folder: Path, target: str) -> None:
    """The written train and test features, with their target, among the run's datasets."""
    run.log_dataset(TRAIN_DATASET, folder / TRAIN_FILE, "training", target)
    run.log_dataset(TEST_DATASET, folder / TEST_FILE, "testing", target)


def staged_columns(staging: Path) -> list[str]:
    """The staged features' columns, and the split label the suite sees them with."""
    import pyarrow.parquet as pq

    return [*pq.ParquetDataset(staging / TRAIN_FILE).schema.names, SPLIT_LABEL]


def paths_of(args: argparse.Namespace) -> ReportPaths:
    return ReportPaths(args.report, args.html, args.report_metrics)


def check_features(
    engine: Featurize, params: Params, args: argparse.Namespace, staging: Path
) -> dict:
    """The features suite's report on the staged train and test parts (written, not judged)."""
    parts = [f"train={staging / TRAIN_FILE}", f"test={staging / TEST_FILE}"]
    examples = params.validate_.result_examples
    check_suite_fits(args.suite, staged_columns(staging), "validate.features_suite")
    report = build_report(engine.validate(parts, SPLIT_LABEL, args.suite, examples), args.suite)
    write_report(report, paths_of(args), f"Validation: {args.suite.name}")
    return report


if __name__ == "__main__":
    cli.finish(cli.run(main))
