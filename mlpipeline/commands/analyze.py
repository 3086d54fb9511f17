"""``python -m mlpipeline analyze``: the searches analysed. Writes ``analysis.out_dir``
(``reports/analysis/``: Markdown, CSV tables and PNG plots) and logs it to MLflow as one run
(tag ``pipeline.role = analysis``):

- a leaderboard across experiments: DVC's (``dvc exp show``) joined with MLflow's train runs
  on the same data version — experiment, git revision, the params that differ, CV score with
  the best trial's fold spread, test metrics, trials, train wall time; an experiment found on
  one side only is listed as such;
- the CV score's sensitivity to each dimension of ``train.search.space`` (importance ranking
  and partial dependence, from a Gaussian-process surrogate of every trial on this data
  version: the current search's ``reports/plots/search.csv`` and MLflow's trial runs), and the
  best score per feature set with its spread across folds;
- the winner's robustness: the best configuration and ``analysis.runners_up`` runners-up
  cross-validated again under ``analysis.robustness_seeds`` other seeds, and the CV-to-test gap;
- a short reading in words.

    python -m mlpipeline analyze [--no-robustness]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.core.config import Params, flatten, load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import atomic_dir, dvc_md5, path_md5, read_json
from mlpipeline.data.names import SEARCH_HISTORY, TRAIN_FILE
from mlpipeline.model import analysis
from mlpipeline.model.analysis import Entry, Sensitivity
from mlpipeline.track.runs import ROLE_TAG, connect, repo_root, stage_run, tracking_enabled

log = logging.getLogger(__name__)

TRAIN_STAGE_DEP = "data/features"
SCORING_PARAMS = ("train.task", "train.objective", "train.target_transform", "train.search.metric")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipeline analyze",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--features", type=Path, default=Path(TRAIN_STAGE_DEP), help="featurize's output folder"
    )
    parser.add_argument(
        "--plots-dir", type=Path, default=Path("reports/plots"), help="train's plot data folder"
    )
    parser.add_argument(
        "--metrics", type=Path, default=Path("reports/metrics.json"), help="train's metrics"
    )
    parser.add_argument(
        "--no-robustness", action="store_true", help="skip the re-evaluation under other seeds"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    data_md5 = path_md5(args.features / TRAIN_FILE)
    runs, tracked = mlflow_side(params, data_md5)
    experiments = dvc_side(dvc_md5(args.features))
    current = pd.read_csv(args.plots_dir / SEARCH_HISTORY).assign(source="workspace")
    trials = analysis.pooled_trials([tracked, current], params.train.search)
    if len(trials) < 2:
        raise PipelineError(
            f"analyze: {len(trials)} trial(s) in train.search.space on this data version; "
            "run `dvc repro` (or `dvc exp run`) first"
        )
    found = Found(params, runs, experiments, trials, read_json(args.metrics))
    seeds = [] if args.no_robustness else robustness_seeds(params)
    robust = robustness_table(found, args.features, seeds) if seeds else None
    out = Path(params.analysis.out_dir)
    with stage_run(
        "analysis", {"analysis": params.analysis, "seed": params.seed},
        inputs={"train": args.features / TRAIN_FILE}, pipeline=False, in_process=True,
    ) as run:  # fmt: skip
        with atomic_dir(out) as folder:
            sentences = write_report(found, robust, folder)
        run.set_tags({ROLE_TAG: "analysis"})
        run.log_metrics(summary_metrics(found, robust))
        run.log_artifact(out, "analysis")
    for sentence in sentences:
        log.info("%s", sentence)
    log.info("wrote %s", out / REPORT)
    return 0


REPORT = "analysis.md"


@dataclass
class Found:
    """What the analysis reads, and the parts computed from the trials alone."""

    params: Params
    runs: list[Entry]
    experiments: list[Entry]
    trials: pd.DataFrame
    metrics: dict

    def __post_init__(self) -> None:
        search, seed = self.params.train.search, self.params.seed
        self.points = analysis.distinct_points(self.trials, list(search.space))
        self.sensitivity: Sensitivity = analysis.sensitivity(self.trials, search, seed)
        self.sets = analysis.feature_sets(self.trials)
        self.margin = analysis.margin(self.points)
        self.score_key = f"cv.search_{search.metric}"
        self.board = analysis.leaderboard(self.experiments, self.runs, self.score_key)


# ---- MLflow ----------------------------------------------------------------------------------


def mlflow_side(params: Params, data_md5: str) -> tuple[list[Entry], pd.DataFrame]:
    """The finished train runs, and the trials of those on this data version (``data_md5``:
    the training file's) that scored them the way this search does (a row each, with the
    run's experiment name in ``source``)."""
    if not tracking_enabled():
        log.warning("analyze: tracking is off: the leaderboard has DVC's experiments only")
        return [], pd.DataFrame()
    import mlflow

    connect(repo_root())
    client = mlflow.MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        ids,
        filter_string="tags.`pipeline.stage` = 'train' and attributes.status = 'FINISHED'",
        max_results=5000,
    )
    ours = {k: str(v) for k, v in flatten(params.train, "train").items() if k in SCORING_PARAMS}
    entries, frames = [], []
    for run in runs:
        trials = trial_frame(client, run)
        entries.append(run_entry(run, trials, data_md5))
        scored_alike = all(run.data.params.get(k) == v for k, v in ours.items())
        if entries[-1].same_data and scored_alike:
            frames.append(trials.assign(source=entries[-1].name or run.info.run_id[:7]))
    log.info("analyze: %d train run(s) in MLflow, %d on this data", len(entries), len(frames))
    return entries, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def trial_frame(client: Any, run: Any) -> pd.DataFrame:
    """A train run's trials (its child runs): the point, ``score`` and ``score_std``."""
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        max_results=5000,
    )
    rows = [
        {
            **child.data.params,
            "score": child.data.metrics.get("cv_score", math.nan),
            "score_std": child.data.metrics.get("cv_score_std", math.nan),
        }
        for child in children
    ]
    return pd.DataFrame(rows)


def run_entry(run: Any, trials: pd.DataFrame, data_md5: str) -> Entry:
    """A train run as a leaderboard entry (``data_md5``: the training data analysed)."""
    tags, info = run.data.tags, run.info
    best_std = math.nan
    if not trials.empty:
        best_std = float(trials.loc[trials["score"].idxmin(), "score_std"])
    seconds = (info.end_time - info.start_time) / 1000 if info.end_time else math.nan
    return Entry(
        name=tags.get("dvc.exp_name", ""),
        rev=tags.get("git.commit", ""),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        cv_std=best_std,
        seconds=seconds,
        started=info.start_time,
        same_data=tags.get("data.train.md5") == data_md5,
    )


# ---- DVC -----------------------------------------------------------------------------------


def dvc_side(features_md5: str) -> list[Entry]:
    """DVC's experiments and their baselines (``dvc exp show``); ``features_md5``: the hash of
    the features analysed, to tell which trained on them."""
    done = subprocess.run(
        ["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        log.warning("analyze: `dvc exp show` failed, no DVC experiments: %s", done.stderr[-300:])
        return []
    entries = dvc_entries(json.loads(done.stdout or "[]"), features_md5)
    log.info("analyze: %d DVC experiment(s) and baseline(s)", len(entries))
    return entries


def dvc_entries(shown: list[dict], features_md5: str | None = None) -> list[Entry]:
    """``dvc exp show --json`` as entries: each baseline commit and its experiments (the
    workspace is left out: it is the baseline or an experiment not yet kept)."""
    entries = []
    for base in shown:
        if base.get("rev") != "workspace":
            name = base.get("name") or base.get("rev", "")[:7]
            entries.append(dvc_entry(base, name, features_md5))
        for experiment in base.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                name = rev.get("name") or experiment.get("name", "")
                entries.append(dvc_entry(rev, name, features_md5))
    return [e for e in entries if e.metrics]


def dvc_entry(rev: dict, name: str, features_md5: str | None) -> Entry:
    """One revision of ``dvc exp show --json``: its params and metrics files, flattened, and
    whether its train stage used the features analysed."""
    data = rev.get("data") or {}
    params: dict[str, Any] = {}
    for content in (data.get("params") or {}).values():
        params.update(flatten(content.get("data") or {}))
    metrics: dict[str, Any] = {}
    for path, content in (data.get("metrics") or {}).items():
        if path.endswith("metrics.json"):  # the train stage's: cv, test, trials
            metrics.update(flatten(content.get("data") or {}))
    features = ((data.get("deps") or {}).get(TRAIN_STAGE_DEP) or {}).get("hash")
    same = None if features is None or features_md5 is None else features == features_md5
    return Entry(name, rev.get("rev", ""), params, metrics, same_data=same)


# ---- robustness ----------------------------------------------------------------------------


def robustness_seeds(params: Params) -> list[int]:
    return [params.seed + i for i in range(1, params.analysis.robustness_seeds + 1)]


def robustness_table(found: Found, features: Path, seeds: list[int]) -> pd.DataFrame | None:
    """The winner and the runners-up cross-validated on this data under each seed, in
    ``runtime.search_jobs`` processes as the search's trials are."""
    from mlpipeline.model.boosting import thread_count
    from mlpipeline.model.search import seeded_runner, worker_plan
    from mlpipeline.model.training import Target, read_split

    params = found.params
    dims = list(params.train.search.space)
    top = found.points[dims].head(1 + params.analysis.runners_up)
    points = [analysis.native(dict(zip(dims, row, strict=True))) for row in top.values]
    if not points:
        return None
    frame, values = read_split(features / TRAIN_FILE, params.featurize.target)
    target = Target.learn(values, params.train, params.featurize.target)
    y = target.learned(values, "training")[1]
    tasks, runtime = len(points) * len(seeds), params.runtime
    jobs, threads = worker_plan(tasks, runtime.search_jobs, thread_count(runtime.num_threads))
    log.info(
        "analyze: %d configuration(s) x %d seed(s), %d process(es)", len(points), len(seeds), jobs
    )
    with seeded_runner(frame, y, params.train, jobs, threads) as evaluate:
        return analysis.robustness(points, seeds, evaluate)


# ---- the report ----------------------------------------------------------------------------


def summary_metrics(found: Found, robust: pd.DataFrame | None) -> dict[str, float]:
    """What the MLflow run shows at a glance."""
    metrics: dict[str, float] = {
        "trials": float(len(found.trials)),
        "experiments": float(len(found.board)),
        **{
            f"importance.{row.dimension}": float(row.share)
            for row in found.sensitivity.importance.itertuples()
        },
    }
    if found.margin is not None:
        metrics |= {"winner.cv_score": found.margin.winner, "winner.lead": found.margin.lead}
    if robust is not None and not robust.empty:
        winner = robust.iloc[0]
        metrics |= {
            "winner.robust_mean": float(winner["mean"]),
            "winner.robust_std": float(winner["std"]),
            "winner.first": float(winner["first"]),
        }
    return metrics


def write_report(found: Found, robust: pd.DataFrame | None, folder: Path) -> list[str]:
    """The tables (CSV), plots (PNG) and ``analysis.md``; returns the reading."""
    folder.mkdir(parents=True, exist_ok=True)
    metric = found.params.gate_metric
    gap = analysis.cv_test_gap(found.metrics, metric)
    sentences = analysis.reading(found.sensitivity, found.sets, found.margin, robust, (gap, metric))
    tables = {
        "leaderboard.csv": found.board,
        "sensitivity.csv": found.sensitivity.importance,
        "feature_sets.csv": found.sets,
        **({"robustness.csv": robust} if robust is not None else {}),
    }
    for name, table in tables.items():
        table.to_csv(folder / name, index=False)
    write_plots(found, robust, folder)
    (folder / REPORT).write_text(report_markdown(found, robust, sentences, (gap, metric)))
    return sentences


def dependence_file(name: str) -> str:
    return f"dependence_{name}.png"


def write_plots(found: Found, robust: pd.DataFrame | None, folder: Path) -> None:
    analysis.plot_importance(found.sensitivity.importance, folder / "importance.png")
    space = found.params.train.search.space
    for name, curve in found.sensitivity.curves.items():
        log_scale = getattr(space[name], "prior", "") == "log-uniform"
        path = folder / dependence_file(name)
        analysis.plot_dependence(name, curve, found.trials, path, log_scale)
    if robust is not None:
        analysis.plot_robustness(robust, folder / "robustness.png")


def report_markdown(
    found: Found, robust: pd.DataFrame | None, sentences: list[str], gap: tuple
) -> str:
    """``analysis.md``: the reading, then each part with its table and plots."""
    sources = found.trials["source"].nunique() if "source" in found.trials else 1
    parts = [
        "# Search analysis",
        f"{len(found.trials)} trials from {sources} search(es) on this data version; "
        f"{len(found.points)} distinct configurations. Lower CV scores are better.",
        "## Reading\n\n" + "\n".join(f"- {s}" for s in sentences),
        "## Leaderboard\n\n" + leaderboard_text(found),
        "## Sensitivity\n\n" + sensitivity_text(found),
        "## Robustness\n\n" + robustness_text(robust, gap),
    ]
    return "\n\n".join(parts) + "\n"


def leaderboard_text(found: Found) -> str:
    if found.board.empty:
        return "No experiment found (DVC or MLflow)."
    return (
        analysis.markdown_table(found.board)
        + "\n\n`found in`: DVC only = no train run in this MLflow store (tracked elsewhere or "
        "with tracking off); MLflow only = a run DVC does not list (a removed experiment, "
        "another baseline, or a workspace run whose results were not committed)."
    )


def sensitivity_text(found: Found) -> str:
    importance = found.sensitivity.importance
    plots = " ".join(f"![{n}]({dependence_file(n)})" for n in importance["dimension"])
    sets = found.sets
    set_text = analysis.markdown_table(sets) if not sets.empty else "One feature set."
    return "\n\n".join(
        [
            analysis.markdown_table(importance, digits=3),
            "![importance](importance.png)",
            "Partial dependence of the CV score on each dimension (line: the surrogate; "
            "dots: the trials):",
            plots,
            "### Feature sets (best trial's CV score ± its spread across folds)",
            set_text,
        ]
    )


def robustness_text(robust: pd.DataFrame | None, gap: tuple) -> str:
    found_gap, metric = gap
    gap_text = (
        f"CV-to-test gap ({metric}): out of fold {found_gap['cv']:.6g}, test "
        f"{found_gap['test']:.6g} ({found_gap['relative']:+.2%})."
        if found_gap
        else ""
    )
    if robust is None:
        return f"Not re-evaluated (--no-robustness or analysis.robustness_seeds: 0).\n\n{gap_text}"
    return "\n\n".join([analysis.markdown_table(robust), "![robustness](robustness.png)", gap_text])
