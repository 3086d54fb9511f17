"""pandas against Dask: wall time and peak memory of ingest, validate, featurize and one
LightGBM fit, at two table sizes, and how each grows with the data.

    python -m benchmarks.engines [--rows 1000000 10000000] [--out benchmarks/results_engines.md]

Needs ``data/raw/data.parquet`` (``dvc repro ingest``). For each size it writes a table like
the raw data (``benchmarks.scale_data``: resampled rows, 2% noise), then runs the stages'
own commands on it (featurize includes its check of the features; both suites are built by
``python -m mlpipeline build-suite`` from the table's first partition, with row-count bounds
of its size), each in its own process tree, under ``engine: pandas`` and
``engine: dask`` (a LocalCluster: 2 workers x 1 thread). Peak memory is the largest sum of
the resident memory of the stage's process and all its children (the Dask workers), sampled
every 50 ms. The fit is 100 rounds of the ``geometry`` feature set with fixed parameters
(``lgb.train`` on the whole training part, or ``lightgbm.dask`` on its partitions).

One more Dask row runs ingest, validate and featurize on one worker whose memory is capped
(``--capped-memory``); ``--runs`` picks the runs (``pandas``, ``dask``, ``capped``), and
``--capped-only`` (the same as ``--runs capped``) runs just that, e.g. a table larger than the
worker:

    python -m benchmarks.engines --rows 20000000 --capped-only --capped-memory 800MiB \
        --out benchmarks/results_engines_capped.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import psutil
import yaml

from benchmarks.harness import machine, utc_now

REPO = Path(__file__).resolve().parents[1]
STEPS = ("ingest", "validate", "featurize", "fit")
RUNS = ("pandas", "dask", "capped")
FIT_PARAMS = {"learning_rate": 0.1, "num_leaves": 63, "min_child_samples": 20}
FIT_ROUNDS = 100


# ---- measuring -----------------------------------------------------------------------------


def measure(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, peak memory of its process tree, and exit code."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    root = psutil.Process(process.pid)
    while process.poll() is None:
        peak = max(peak, _tree_rss(root))
        time.sleep(0.05)
    out, err = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        _say(f"  {' '.join(command[2:4])} exited {process.returncode}: {tail}")
    return {"seconds": seconds, "peak_mb": peak / 2**20, "exit": process.returncode, "out": out}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201 - progress of a long benchmark


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return total


# ---- the runs ------------------------------------------------------------------------------


def write_params(folder: Path, data: Path, engine: str, workers: int, memory_limit: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["engine"] = engine
    params["runtime"]["dask"].update(n_workers=workers, memory_limit=memory_limit)
    params["dataset"].update(source=str(data), format="parquet", read_options={})
    params["runtime"]["dask"]["blocksize"] = "16MiB"
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def reference_suites(data: Path, folder: Path) -> dict[str, Path]:
    """The raw and features suites built (``build-suite``) from the first partition of the
    scaled table: the noise moves values across the default suites' distribution bins."""
    first = sorted(data.glob("*.parquet"))[0]
    suites = {"raw": folder / f"suite-{data.name}.json"}
    suites["features"] = folder / f"features-suite-{data.name}.json"
    build = ("mlpipeline", "build-suite", "--reference", str(first), "--out")
    _run_module(*build, str(suites["raw"]))
    _run_module(*build, str(suites["features"]), "--featurize")
    return suites


def _run_module(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, check=True, capture_output=True)


def scaled_suite(folder: Path, rows: int, reference: Path, name: str = "raw_suite.json") -> Path:
    """A suite with the row-count bounds of ``rows`` rows."""
    suite = json.loads(reference.read_text())
    for entry in suite["expectations"]:
        if entry["type"] == "expect_table_row_count_to_be_between":
            entry["kwargs"].update(min_value=rows // 2, max_value=rows * 2)
    path = folder / name
    path.write_text(json.dumps(suite))
    return path


def command_options(**paths: Path) -> list[str]:
    """``--name value`` pairs (``report_metrics`` becomes ``--report-metrics``)."""
    return [
        part for key, path in paths.items() for part in (f"--{key.replace('_', '-')}", str(path))
    ]


def step_commands(work: Path, params: Path, suites: dict[str, Path]) -> dict[str, list[str]]:
    """Each step's command: the stages' own commands, and this module's ``fit``."""
    py = [sys.executable, "-m"]
    raw, features = work / "raw.parquet", work / "features"
    settings = command_options(params=params)
    validate = command_options(
        data=raw,
        suite=suites["raw"],
        report=work / "v.json",
        html=work / "v.html",
        metrics=work / "vm.json",
    )
    featurize = command_options(
        data=raw,
        out_dir=features,
        metrics=work / "f.json",
        suite=suites["features"],
        report=work / "fv.json",
        html=work / "fv.html",
        report_metrics=work / "fvm.json",
        raw_suite=suites["raw"],
    )
    return {
        "ingest": [
            *py,
            "stages.ingest",
            *settings,
            *command_options(out=raw, meta=work / "ingest.json"),
        ],
        "validate": [*py, "stages.validate", *settings, *validate],
        "featurize": [*py, "stages.featurize", *settings, *featurize],
        "fit": [*py, "benchmarks.engines", "fit", *settings, *command_options(features=features)],
    }


def run_engine(
    data: Path, rows: int, engine: str, cluster: tuple[int, str], steps, root: Path, suites: dict
) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=root))
    params = write_params(work, data, engine, *cluster)
    scaled = {
        "raw": scaled_suite(work, rows, suites["raw"]),
        "features": scaled_suite(work, rows, suites["features"], "features_suite.json"),
    }
    commands = step_commands(work, params, scaled)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    results = {}
    for step in steps:
        results[step] = measure(commands[step], env)
        if step == "fit" and results[step]["exit"] == 0:
            last = results[step]["out"].strip().splitlines()[-1]  # LightGBM prints too
            results[step]["fit_seconds"] = json.loads(last)["fit_seconds"]
        took = results[step]
        _say(
            f"  {rows:>10,} {engine:<6} {step:<9} {took['seconds']:7.1f} s "
            f"{took['peak_mb']:8.0f} MB"
        )
    return results


# ---- one fit (a subcommand, so it is measured in its own process) --------------------------


def fit(params_path: Path, features: Path) -> dict:
    from mlpipeline.core.config import load_params
    from mlpipeline.dask import cluster
    from mlpipeline.dask.training import refit_on_cluster
    from mlpipeline.model.boosting import refit, thread_count
    from mlpipeline.model.training import Target

    params = load_params(params_path)
    target = Target(params.featurize.target, params.train)  # regression: no classes
    columns = params.train.feature_sets["geometry"]
    lgb = {
        "objective": "regression",
        "seed": params.seed,
        "deterministic": True,
        "verbosity": -1,
        "num_threads": thread_count(0),
        **FIT_PARAMS,
    }
    if params.engine == "dask":
        with cluster.dask_client(params.runtime.dask) as client:
            start = time.perf_counter()
            refit_on_cluster(client, features / "train.parquet", columns, lgb, FIT_ROUNDS, target)
            return {"fit_seconds": time.perf_counter() - start}
    frame = pd.read_parquet(features / "train.parquet", columns=[*columns, target.name])
    y = target.learned(frame.pop(target.name), "training")[1]
    start = time.perf_counter()
    refit(frame, y, columns, lgb, FIT_ROUNDS)
    return {"fit_seconds": time.perf_counter() - start}


# ---- report --------------------------------------------------------------------------------


def in_memory_mb(data: Path) -> float:
    return pd.read_parquet(data).memory_usage(deep=True).sum() / 2**20


def report(results: dict, sizes: dict[int, float], capped: str) -> str:
    rows = sorted(sizes)
    lines = [
        *_report_head(sizes, rows),
        *_step_rows(results, rows),
        "",
        "Fit-only seconds (inside the process, data loaded): " + _fit_seconds(results, rows),
        "",
        f"`dask, capped`: one LocalCluster worker limited to {capped}, less than the table's "
        "in-memory size at the largest size. Peak memory counts the stage process (with the "
        "scheduler) and every worker process.",
    ]
    return "\n".join(lines) + "\n"


def _report_head(sizes: dict[int, float], rows: list[int]) -> list[str]:
    """The title, the machine, the table sizes and the table's header."""
    small, large = rows[0], rows[-1]
    return [
        "# pandas and Dask engines at scale",
        "",
        f"{utc_now()} · {machine()} · {psutil.virtual_memory().total / 2**30:.0f} GiB · "
        "`python -m benchmarks.engines`",
        "",
        "In-memory size of the raw table (pandas): "
        + ", ".join(f"{n:,} rows = {sizes[n]:,.0f} MB" for n in rows),
        "",
        f"| step | engine | {' | '.join(f'{n:,} rows: s / peak MB' for n in rows)} "
        f"| {large // small}x rows: time x / memory x |",
        "|---|---|" + "---|" * (len(rows) + 1),
    ]


def _step_rows(results: dict, rows: list[int]) -> list[str]:
    """One table row per step and run: seconds and peak memory per size, and their growth."""
    lines = []
    for step in STEPS:
        for label, by_size in results.items():
            if step not in by_size[rows[0]]:
                continue
            cells = [by_size[n][step] for n in rows]
            shown = [
                f"{c['seconds']:.1f} / {c['peak_mb']:,.0f}"
                + ("" if c["exit"] == 0 else " (failed)")
                for c in cells
            ]
            first, last = cells[0], cells[-1]
            time_x, memory_x = (
                last["seconds"] / first["seconds"],
                last["peak_mb"] / first["peak_mb"],
            )
            growth = f"{time_x:.1f} / {memory_x:.1f}"
            lines.append(f"| {step} | {label} | {' | '.join(shown)} | {growth} |")
    return lines


def _fit_seconds(results: dict, rows: list[int]) -> str:
    parts = []
    for label, by_size in results.items():
        found = [by_size[n].get("fit", {}).get("fit_seconds") for n in rows]
        if all(f is not None for f in found):
            parts.append(f"{label} " + " / ".join(f"{f:.1f}" for f in found))
    return "; ".join(parts)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("fit", help="one LightGBM fit (used by the benchmark)")
    one.add_argument("--params", type=Path, required=True)
    one.add_argument("--features", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--capped-memory", default="800MiB", help="of the one capped worker")
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS,
        default=list(RUNS),
        help="which runs (default: all); `capped` has no fit",
    )
    parser.add_argument("--capped-only", action="store_true", help="the same as --runs capped")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results_engines.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.command == "fit":
        print(json.dumps(fit(args.params, args.features)))  # noqa: T201 - read by the parent
        return 0
    root = Path(tempfile.mkdtemp(prefix="engines-", dir=args.workdir))
    results: dict[str, dict[int, dict]] = {"pandas": {}, "dask": {}, "dask, capped": {}}
    sizes = {}
    for rows in sorted(args.rows):
        data = root / f"data-{rows}"
        _run_module("benchmarks.scale_data", "--rows", str(rows), "--out", str(data))
        sizes[rows] = in_memory_mb(data)
        suites = reference_suites(data, root)
        chosen = ["capped"] if args.capped_only else args.runs
        runs = {
            "pandas": ("pandas", (0, "auto"), STEPS),
            "dask": ("dask", (0, "auto"), STEPS),
            "capped": ("dask, capped", (1, args.capped_memory), STEPS[:3]),
        }
        for label, cluster, steps in (runs[name] for name in chosen):
            engine = label.split(",")[0]
            results[label][rows] = run_engine(data, rows, engine, cluster, steps, root, suites)
    text = report({k: v for k, v in results.items() if v}, sizes, args.capped_memory)
    args.out.write_text(text)
    print(text)  # noqa: T201 - the benchmark's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
