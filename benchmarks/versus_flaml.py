"""Quality per minute against what a user would pick instead: FLAML's AutoML (LightGBM only)
given the pipeline's own ``dvc repro`` wall time, on the pipeline's train/test split and
features, for every table of a ``python -m benchmarks.tables --keep DIR`` run.

    python -m benchmarks.versus_flaml --copies DIR [DIR ...] [--only NAME ...]
                                      [--out benchmarks/results_flaml.md]

Each ``DIR`` holds the kept copies of a tables run (``DIR/<name>/``) and its ``results.json``
(the pipeline's ``dvc repro`` wall seconds per table; a later ``DIR`` replaces an earlier one's
table). For each table whose ``dvc repro`` passed: ``flaml.AutoML().fit(X_train, y_train,
task=..., metric="rmse" | "log_loss", estimator_list=["lgbm"], time_budget=<those seconds>,
n_jobs=<cores>, seed=...)`` on ``data/features/train.parquet`` (rows with a target), scored on
``data/features/test.parquet`` with the metric the pipeline reports (``reports/metrics.json``),
beside the naive baseline of the tables benchmark. The pipeline is "at least as good" with a
test RMSE / log loss no higher than FLAML's. Needs ``benchmarks/requirements.txt`` (flaml).
A benchmark, not a test: run it on an otherwise idle machine (the load average is reported).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.harness import (
    command_line,
    facts_list,
    load_1min,
    machine,
    usable_cores,
    utc_now,
    versions,
)
from benchmarks.tables import baseline

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results_flaml.md"
SEED = 20240611


@dataclass
class Compared:
    name: str
    task: str
    metric: str  # rmse | log_loss
    budget_s: float  # the pipeline's dvc repro wall time, FLAML's time budget
    pipeline: float = float("nan")
    flaml: float = float("nan")
    baseline: float = float("nan")
    flaml_seconds: float = 0.0
    error: str = ""

    @property
    def at_least_as_good(self) -> bool:
        return not self.error and self.pipeline <= self.flaml


def repro_seconds(copies: Sequence[Path]) -> dict[str, tuple[Path, float]]:
    """Each table's copy and its pipeline's ``dvc repro`` wall seconds (passed runs only)."""
    found = {}
    for folder in copies:
        for result in json.loads((folder / "results.json").read_text()):
            repro = (result.get("steps") or {}).get("repro") or {}
            if repro.get("code") == 0:
                found[result["name"]] = (folder / result["name"], float(repro["seconds"]))
    return found


def split_of(repo: Path, target: str) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """The pipeline's featurized train and test parts, rows with a target only."""
    parts = []
    for name in ("train", "test"):
        frame = pd.read_parquet(repo / f"data/features/{name}.parquet")
        frame = frame[frame[target].notna()]
        parts += [frame.drop(columns=[target]), frame[target]]
    return tuple(parts)  # type: ignore[return-value]


def flaml_score(repo: Path, target: str, task: str, budget: float) -> tuple[float, float]:
    """FLAML's test RMSE / log loss within ``budget`` seconds, and the seconds it took."""
    from flaml import AutoML
    from sklearn.metrics import log_loss, mean_squared_error

    x_train, y_train, x_test, y_test = split_of(repo, target)
    automl = AutoML()
    regression = task == "regression"
    start = time.perf_counter()
    automl.fit(
        x_train,
        y_train.astype(float) if regression else y_train,
        task="regression" if regression else "classification",
        metric="rmse" if regression else "log_loss",
        estimator_list=["lgbm"],
        time_budget=budget,
        n_jobs=usable_cores(),
        seed=SEED,
        verbose=0,
    )
    if regression:
        predicted = automl.predict(x_test)
        score = float(np.sqrt(mean_squared_error(y_test.astype(float), predicted)))
    else:
        score = float(log_loss(y_test, automl.predict_proba(x_test), labels=automl.classes_))
    return score, time.perf_counter() - start


def compare(name: str, repo: Path, budget: float) -> Compared:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    task, target = params["dataset"]["task"], params["dataset"]["target"]
    metric = "rmse" if task == "regression" else "log_loss"
    result = Compared(name, task, metric, budget)
    result.pipeline = json.loads((repo / "reports/metrics.json").read_text())["test"][metric]
    result.baseline = baseline(repo, target, task)[metric]
    try:
        result.flaml, result.flaml_seconds = flaml_score(repo, target, task, budget)
    except Exception as exc:  # FLAML's failure on a table is a result, not a crash
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


def report(results: list[Compared], facts: dict[str, str]) -> str:
    good = sum(r.at_least_as_good for r in results)
    lines = ["# The pipeline against FLAML in the same time", "", facts_list(facts), ""]
    lines += [
        f"The pipeline is at least as good as FLAML on {good} of {len(results)} tables.",
        "",
        "| table | task | metric | pipeline | FLAML (LightGBM, same time) | baseline "
        "| pipeline vs FLAML | time budget (FLAML took) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        versus = r.error or f"{r.pipeline / r.flaml - 1:+.1%}" + (
            " ✓" if r.at_least_as_good else ""
        )
        lines.append(
            f"| `{r.name}` | {r.task} | {r.metric} | {r.pipeline:.4g} | {r.flaml:.4g} | "
            f"{r.baseline:.4g} | {versus} | {r.budget_s:.0f} s ({r.flaml_seconds:.0f} s) |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--copies", type=Path, nargs="+", required=True, metavar="DIR")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = time.perf_counter(), load_1min()
    tables = repro_seconds(args.copies)
    names = args.only or list(tables)
    results = []
    for name in names:
        repo, budget = tables[name]
        results.append(compare(name, repo, budget))
        r = results[-1]
        print(f"{name}: pipeline {r.pipeline:.4g}, FLAML {r.flaml:.4g} {r.error}",  # noqa: T201
              file=sys.stderr, flush=True)  # fmt: skip
    facts = {
        "command": f"`{command_line('benchmarks.versus_flaml', argv)}`",
        "date": utc_now(),
        "machine": machine(),
        "versions": versions(("flaml", "lightgbm", "pandas")),
        "load average (1 min) at start": f"{load:.2f}",
        "wall time": f"{(time.perf_counter() - started) / 60:.1f} min",
        "split and features": "the pipeline's own (`data/features/{train,test}.parquet` of each "
        "kept copy); rows without a target dropped; the pipeline's figures from its "
        "`reports/metrics.json`",
    }
    args.out.write_text(report(results, facts))
    print(f"results: {args.out}", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
