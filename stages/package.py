"""Stage ``package``: wrap the trained booster as an MLflow pyfunc model that takes raw rows,
register it, and let the champion gate decide.

The model (models-from-code: LightGBM's text booster and a JSON spec as artifacts, the
shared featurization as code, no pickle) is written to ``--out``, servable with ``mlflow
models serve``, and registered as a new version of ``package.model_name`` with the alias
``challenger``; it becomes ``champion`` if it passes the gate (``package.gate``). The model
card (with the search's sensitivity, from ``--search``) is reproducible and kept in git; the
gate's decision (``--decision``) depends on this machine's registry and is not. The run lists
the raw table and the train and test features as its datasets; the registered version
resolves to MLflow's LoggedModel, which holds the test metrics (measured on the test features)
and the best parameters; the card's plots (DVC's definitions as PNG) are logged beside it.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlpipeline.core import cli
from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import path_md5, read_json, write_json, write_text
from mlpipeline.data.names import (
    BOOSTER_FILE,
    RAW_DATASET,
    SUMMARY_FILE,
    TEST_DATASET,
    TEST_FILE,
    TRAIN_DATASET,
    TRAIN_FILE,
    WORST_FILE,
)
from mlpipeline.model.analysis import card_section
from mlpipeline.serve.card import model_card
from mlpipeline.serve.packaging import (
    card_images,
    evaluate,
    held_out_rows,
    lineage_tags,
    link_logged_model,
    model_kwargs,
    raw_schema,
    register,
    save_model,
)
from mlpipeline.track.plots import plot_definitions, present
from mlpipeline.track.registry import decision_record, split_definition
from mlpipeline.track.runs import (
    TRACKING_SWITCH,
    DatasetRef,
    StageRun,
    stage_run,
    tracking_enabled,
)

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model-dir", type=Path, required=True, help="train's output folder")
    parser.add_argument("--raw", type=Path, required=True, help="raw table (input example)")
    parser.add_argument("--features", type=Path, required=True, help="featurize's output folder")
    parser.add_argument("--metrics", type=Path, required=True, help="train's metrics JSON")
    parser.add_argument("--validation", type=Path, required=True, help="raw validation report")
    parser.add_argument("--out", type=Path, required=True, help="MLflow model folder to write")
    parser.add_argument("--decision", type=Path, required=True, help="gate decision JSON")
    parser.add_argument("--card", type=Path, required=True, help="model card Markdown")
    parser.add_argument("--slices", type=Path, required=True, help="train's metric by segment")
    parser.add_argument("--search", type=Path, required=True, help="train's search history CSV")
    parser.add_argument("--plots-dir", type=Path, required=True, help="train's plot data")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not tracking_enabled():
        raise PipelineError(f"package: registers the model in MLflow; unset {TRACKING_SWITCH}=off")
    params = load_params(args.params)
    name = params.package.model_name
    summary, metrics = read_json(args.model_dir / SUMMARY_FILE), read_json(args.metrics)
    plots = [plot.name for plot in present(plot_definitions(), args.plots_dir)]
    held_out = held_out_rows(args.features, params.featurize.target)
    split = split_definition(
        params.seed, params.featurize, raw_schema(args.raw), path_md5(args.raw)
    )
    inputs = {"booster": args.model_dir / BOOSTER_FILE, "summary": args.model_dir / SUMMARY_FILE}
    with (
        stage_run("package", params.package, inputs=inputs, in_process=True) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        test = log_datasets(run, args, params.featurize.target)
        kwargs = model_kwargs(args.model_dir, args.raw, params, summary, Path(scratch))
        challenger = evaluate(save_model(args.out, kwargs), *held_out, params.train.task)
        tags = lineage_tags(params, split, args.validation, args.out)
        found = card_section(pd.read_csv(args.search), params.train.search, params.seed)
        slices, worst = read_json(args.slices), read_json(args.model_dir / WORST_FILE)
        card = model_card(name, summary, metrics, params, tags, found, plots, slices, worst)
        write_text(card, args.card)
        scored = (challenger, held_out)
        version, decision = register(run, kwargs, tags, card, scored, params, split, slices)
        model_id = link_logged_model(name, version, metrics["test"], test, summary)
        write_json(decision_record(decision, version), args.decision)
        log_files(run, args, Path(scratch), plots)
    state = "champion" if decision.promote else "challenger"
    log.info("%s v%s (model %s): %s (%s)", name, version, model_id, state, decision.reason)
    return 0


def log_datasets(run: StageRun, args: argparse.Namespace, target: str) -> DatasetRef:
    """The raw table and the train and test features among the run's datasets; the test
    features' reference (the LoggedModel's test metrics are measured on it)."""
    test = DatasetRef(TEST_DATASET, str(args.features / TEST_FILE), "testing", target)
    run.log_dataset(RAW_DATASET, args.raw, "raw")
    run.log_dataset(TRAIN_DATASET, args.features / TRAIN_FILE, "training", target)
    run.log_dataset(test.name, Path(test.path), test.context, test.target)
    return test


def log_files(run: StageRun, args: argparse.Namespace, scratch: Path, plots: list[str]) -> None:
    """The card with its plots (PNG, at the relative paths the card links: the train run's
    images of the same plot data, or rendered here), the gate's decision and the raw
    validation report, as the run's artifacts."""
    for path, folder in ((args.card, None), (args.decision, None), (args.validation, "validation")):
        run.log_artifact(path, folder)
    booster = args.model_dir / BOOSTER_FILE
    if card_images(run, booster, args.plots_dir, scratch / "plots", plots):
        run.log_artifact(scratch / "plots", "plots")


if __name__ == "__main__":
    cli.finish(cli.run(main))
