"""Stage ``train``: Bayesian search (scikit-optimize) over LightGBM hyperparameters and
feature sets, refit of the best configuration, one evaluation on the test part.

For each point the optimizer asks for (a hyperparameter set and a feature set), LightGBM runs
k-fold cross-validation on the training part; the test part is seen once, by the refit model.
Every trial is an MLflow child run. Outputs: the booster (LightGBM's text format), a summary
the package stage reads, metrics, and plot data (predictions, importance, search history).
A search killed part-way resumes from its checkpoint with the same result.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlpipeline.core import cli
from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import file_md5, write_csv, write_json, write_text
from mlpipeline.data.names import (
    BOOSTER_FILE,
    SPEC_FILE,
    SUMMARY_FILE,
    TEST_DATASET,
    TEST_FILE,
    TRAIN_DATASET,
    TRAIN_FILE,
    WORST_FILE,
)
from mlpipeline.engine.train import open_engine
from mlpipeline.features.transform import FeatureSpec
from mlpipeline.model.boosting import portable_model_text, thread_count
from mlpipeline.model.search import Checkpoint
from mlpipeline.model.training import (
    Fitted,
    Results,
    Target,
    open_checkpoint,
    results,
    trial_record,
)
from mlpipeline.track.runs import BOOSTER_TAG, StageRun, stage_run

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--features", type=Path, required=True, help="featurize's output folder")
    parser.add_argument("--model-dir", type=Path, required=True, help="booster + summary go here")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--slices", type=Path, required=True, help="test metric by segment")
    parser.add_argument("--plots-dir", type=Path, required=True)
    parser.add_argument(
        "--checkpoint-dir", type=Path, required=True, help="finished trials, kept across a crash"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    inputs = {"train": args.features / TRAIN_FILE, "test": args.features / TEST_FILE}
    name = params.featurize.target
    train_values, test_values = (read_target(inputs[part], name) for part in ("train", "test"))
    target = Target.learn(train_values, params.train, name)
    actual = (target.learned(train_values, "training")[0], target.learned(test_values, "test")[0])
    checkpoint = open_checkpoint(args.checkpoint_dir, params, args.features)
    logged = {"train": params.train, "seed": params.seed, "target": name}
    with stage_run("train", logged, inputs=inputs) as run, open_engine(params) as engine:
        run.set_tags({"engine": params.engine})
        log_warm_start(run, checkpoint)
        run.log_dataset(TRAIN_DATASET, inputs["train"], "training", name)
        run.log_dataset(TEST_DATASET, inputs["test"], "testing", name)
        fitted = engine.fit(
            inputs, target, params, checkpoint, lambda t: run.log_child(trial_record(t))
        )
        spec = FeatureSpec.from_json(args.features / SPEC_FILE)
        test = read_test(inputs["test"], [*fitted.columns, name])
        threads = thread_count(params.runtime.num_threads)
        written = results(fitted, target, actual, test, spec, params.seed, threads)
        write_outputs(fitted, written, args)
        log_outputs(run, fitted, written, args)
    checkpoint.remove()
    log.info("test: %s", {k: round(v, 4) for k, v in written.metrics["test"].items()})
    return 0


def log_warm_start(run: StageRun, checkpoint: Checkpoint) -> None:
    """The tag ``search.warm_start`` (the source and its commit) and the number of trials it
    told the optimizer (``warm_start_trials``)."""
    warm = checkpoint.warm
    if warm is not None:
        run.set_tags({"search.warm_start": warm.source})
    run.log_metrics({"warm_start_trials": len(warm.points) if warm else 0})


def read_target(path: Path, column: str) -> pd.Series:
    """One column of a featurized part (a file, or a folder of parts with engine: dask)."""
    try:
        return pd.read_parquet(path, columns=[column])[column]
    except (KeyError, ValueError) as exc:  # pyarrow: "No match for FieldRef.Name(...)"
        raise PipelineError(f"train: target column '{column}' is not in {path}") from exc


def read_test(path: Path, columns: list[str]) -> pd.DataFrame:
    """The test part's features the model uses, and the target."""
    return pd.read_parquet(path, columns=columns)


def write_outputs(fitted: Fitted, written: Results, args: argparse.Namespace) -> None:
    write_text(portable_model_text(fitted.booster), args.model_dir / BOOSTER_FILE)
    write_json(written.summary, args.model_dir / SUMMARY_FILE)
    write_json(written.worst, args.model_dir / WORST_FILE)
    write_json(written.metrics, args.metrics)
    write_json(written.slices, args.slices)
    for name, frame in written.plots.items():
        write_csv(frame, args.plots_dir / name)


def log_outputs(run: StageRun, fitted: Fitted, written: Results, args: argparse.Namespace) -> None:
    trials = fitted.trials
    run.set_tags({BOOSTER_TAG: file_md5(args.model_dir / BOOSTER_FILE)})
    run.log_params({f"best.{k}": v for k, v in fitted.best.point.items()})
    run.log_metrics({**written.metrics, "trials_reused": sum(t.reused for t in trials)})
    run.log_metrics({"slices.worst_ratio": (written.slices["worst"] or {}).get("ratio", 1.0)})
    run.log_series(
        {"trial.score": [t.score for t in trials], "trial.seconds": [t.seconds for t in trials]}
    )
    run.log_artifact(args.plots_dir, "plots")
    run.log_plot_images(args.plots_dir, "plots")  # the same plots as PNG, DVC's definitions
    run.log_artifact(args.model_dir / SUMMARY_FILE)
    run.log_artifact(args.model_dir / WORST_FILE)
    run.log_artifact(args.slices)


if __name__ == "__main__":
    cli.finish(cli.run(main))
