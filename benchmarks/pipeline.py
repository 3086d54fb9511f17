"""The pipeline side by side with the bare libraries: what it adds around the essential work.

    python -m benchmarks [--repeat 3] [--out benchmarks/results.md]

About 16-18 minutes on 2 cores. Everything runs in a throwaway copy of the repository (its
tracked files, a git repository, DVC cache and MLflow store of its own), so nothing of yours
is touched. Each figure is the median of ``--repeat`` runs (no-op and start-up: twice that),
and each ratio is between figures of this run:

1. end to end: ``dvc repro --force`` ÷ ``benchmarks.bare`` (read, featurize, the same LightGBM
   fits as the pipeline's search, refit, write; one process) — target ≤ 1.10 (issue 32);
2. no-op: ``dvc repro`` with nothing changed ÷ the same on a trivial five-stage pipeline — ≤ 1.5;
3. a one-line params change (``package.gate.margin``): the stages that ran, and the time;
4. start-up: ``python -c "import stages.<stage>"`` against ``python -c "import pandas"``, and
   the heavy libraries loaded before the stage's work begins that it does not use — ≤ 1 s;
5. tracking: the train stage with MLflow on ÷ off (``PIPELINE_TRACKING=off``; a search of
   ``--tracking-calls`` calls) — ≤ 1.05;
6. threads: one LightGBM fit (the trained model's params and rounds, on one Dataset) with the
   project's thread count ÷ the best of 1, 2 and LightGBM's default, in rotating order
   (``2 * --repeat`` rounds) — ≤ 1.05;
7. serving: 1-row p50 and p99 over HTTP ÷ in-process ``pyfunc.predict``; rows/s at 1,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from benchmarks.harness import load_1min, machine, median, percentile, utc_now, versions

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results.md"
PYTHON = sys.executable
STAGES = ("ingest", "validate", "featurize", "train", "package")
HEAVY = (
    "mlflow",
    "great_expectations",
    "skopt",
    "lightgbm",
    "sklearn",
    "scipy",
    "dask",
    "distributed",
)
NEEDS = {  # the heavy libraries each stage's work uses (MLflow: every stage's run)
    "ingest": {"mlflow"},
    "validate": {"mlflow", "great_expectations", "scipy"},
    "featurize": {"mlflow", "great_expectations", "scipy"},  # it checks the features too
    "train": {"mlflow", "lightgbm", "sklearn", "skopt", "scipy"},
    "package": {"mlflow", "lightgbm", "sklearn", "scipy"},
}
TARGETS = {
    "end_to_end": 1.10,
    "noop": 1.5,
    "unused_imports": 1.0,
    "tracking": 1.05,
    "threads": 1.05,
}
RUNNING = re.compile(r"Running stage '([^']+)'")


# ---- processes -----------------------------------------------------------------------------


def workspace_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter's environment first on PATH; no outside tracking server or cluster."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "DASK_SCHEDULER_ADDRESS"}
    }
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **(extra or {})}


def run(command: Sequence[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Run to completion; wall seconds and the output (stdout and stderr). Fails loudly."""
    start = time.perf_counter()
    done = subprocess.run(
        list(command), cwd=cwd, env=env or workspace_env(), capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n" + "\n".join(tail))
    return seconds, done.stdout + done.stderr


def repro(workspace: Path, *flags: str) -> dict:
    """``dvc repro``: wall seconds, the stages that ran and each one's seconds (from when
    DVC announced it to when it announced the next, or finished)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        ["dvc", "repro", *flags],
        cwd=workspace,
        env=workspace_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marks, lines = [], []
    for line in process.stdout or []:
        lines.append(line)
        found = RUNNING.search(line)
        if found:
            marks.append((found.group(1), time.perf_counter()))
    process.wait()
    end = time.perf_counter()
    if process.returncode != 0:
        raise SystemExit("dvc repro failed:\n" + "".join(lines[-20:]))
    stages = {
        name: (marks[i + 1][1] if i + 1 < len(marks) else end) - at
        for i, (name, at) in enumerate(marks)
    }
    return {"seconds": end - start, "stages": stages}


# ---- the copy of the repository ----------------------------------------------------------


def make_workspace(root: Path) -> Path:
    """The repository in a git repository of its own."""
    workspace = copy_repository(root / "workspace")
    _git_commit(workspace)
    return workspace


def copy_repository(dest: Path) -> Path:
    """Copy the repository's files, tracked and new ones git does not ignore, as they are
    now (no outputs, caches or stores) to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _git_commit(folder: Path) -> None:
    identity = ["-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *command], cwd=folder, check=True, capture_output=True)


def trivial_pipeline(root: Path) -> Path:
    """Five chained stages that each write one line: DVC's own floor."""
    folder = root / "trivial"
    folder.mkdir()
    stages = {}
    for n in range(5):
        deps = [f"s{n - 1}.txt"] if n else []
        stages[f"s{n}"] = {"cmd": f"echo {n} > s{n}.txt", "deps": deps, "outs": [f"s{n}.txt"]}
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    _git_commit(folder)
    run(["dvc", "init", "-q"], folder)
    run(["dvc", "config", "core.analytics", "false"], folder)
    repro(folder)
    return folder


# ---- the measurements ----------------------------------------------------------------------


def end_to_end(workspace: Path, out: Path, repeat: int, say: Callable[[str], None]) -> dict:
    """``dvc repro --force`` and the bare script, interleaved."""
    pipeline, bare = [], []
    for n in range(repeat):
        pipeline.append(repro(workspace, "--force"))
        say(f"dvc repro --force #{n + 1}: {pipeline[-1]['seconds']:.1f} s")
        seconds, output = run(
            [PYTHON, "-m", "benchmarks.bare", "--workspace", str(workspace), "--out", str(out)],
            REPO,
        )
        bare.append(seconds)
        say(f"bare script #{n + 1}: {seconds:.1f} s")
    summary = json.loads(output.strip().splitlines()[-1])
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    stage_names = list(pipeline[0]["stages"])
    return {
        "pipeline": median([p["seconds"] for p in pipeline]),
        "bare": median(bare),
        "runs": [p["seconds"] for p in pipeline],
        "bare_runs": bare,
        "stages": {s: median([p["stages"].get(s, 0.0) for p in pipeline]) for s in stage_names},
        "trials": summary["trials"],
        "rmse": (metrics.get("test", metrics).get("rmse"), summary["test"]["rmse"]),
    }


def noop(workspace: Path, trivial: Path, repeat: int) -> dict:
    ours = [repro(workspace)["seconds"] for _ in range(repeat)]
    floor = [repro(trivial)["seconds"] for _ in range(repeat)]
    return {"pipeline": median(ours), "trivial": median(floor)}


def params_change(workspace: Path, repeat: int) -> dict:
    """Nudge ``package.gate.margin`` (a new value each time, so no run cache) and rebuild."""
    path = workspace / "params.yaml"
    original = path.read_text()
    line = re.search(r"^(\s*margin:\s*)([0-9.]+)", original, re.MULTILINE)
    if not line:
        raise SystemExit("params.yaml has no package.gate.margin line")
    times, ran = [], set()
    try:
        for n in range(repeat):
            value = float(line.group(2)) + 0.0001 * (n + 1)
            changed = original[: line.start(2)] + f"{value:.4f}" + original[line.end(2) :]
            path.write_text(changed)
            result = repro(workspace)
            times.append(result["seconds"])
            ran |= set(result["stages"])
    finally:
        path.write_text(original)
        repro(workspace)
    return {"seconds": median(times), "ran": sorted(ran)}


def startup(workspace: Path, repeat: int) -> dict:
    """Import time of each stage module against pandas; heavy imports it does not use."""
    baseline = median([run([PYTHON, "-c", "import pandas"], workspace)[0] for _ in range(repeat)])
    stages = {}
    for stage in STAGES:
        code = f"import stages.{stage}"
        seconds = median([run([PYTHON, "-c", code], workspace)[0] for _ in range(repeat)])
        _, trace = run([PYTHON, "-X", "importtime", "-c", code], workspace)
        heavy = heavy_imports(trace)
        unused = {name: s for name, s in heavy.items() if name not in NEEDS[stage]}
        stages[stage] = {"seconds": seconds, "heavy": heavy, "unused": unused}
    return {"pandas": baseline, "stages": stages}


def heavy_imports(trace: str) -> dict[str, float]:
    """Seconds spent importing each heavy library (``-X importtime`` output), counting one
    imported by another heavy library as part of that one."""
    rows = []
    for line in trace.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        level = (len(name) - len(name.lstrip())) // 2
        rows.append((level, name.strip(), int(cumulative) / 1e6))
    found: dict[str, float] = {}
    stack: list[tuple[int, str]] = []
    for level, name, seconds in reversed(rows):  # parents are printed after their children
        while stack and stack[-1][0] >= level:
            stack.pop()
        inside_heavy = any(parent in HEAVY for _, parent in stack)
        if name in HEAVY and not inside_heavy:
            found[name] = found.get(name, 0.0) + seconds
        stack.append((level, name))
    return found


def train_command(params: Path, out: Path) -> list[str]:
    """The train stage on the workspace's features, its outputs and checkpoints under ``out``."""
    return [
        PYTHON, "-m", "stages.train", "--params", str(params),
        "--features", "data/features", "--model-dir", str(out / "model"),
        "--metrics", str(out / "metrics.json"), "--slices", str(out / "slices.json"),
        "--plots-dir", str(out / "plots"), "--checkpoint-dir", str(out / "checkpoint"),
    ]  # fmt: skip


def tracking(workspace: Path, root: Path, calls: int, repeat: int, say) -> dict:
    """The train stage on the workspace's features, MLflow on and off, interleaved."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    search = params["train"]["search"]
    search.update(n_calls=calls, n_initial_points=min(search["n_initial_points"], calls))
    path = root / "tracking-params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    times: dict[str, list[float]] = {"on": [], "off": []}
    for n in range(repeat):
        for mode in ("on", "off"):
            out = root / f"train-{mode}-{n}"
            command = train_command(path, out)
            env = workspace_env({"PIPELINE_TRACKING": mode})
            times[mode].append(run(command, workspace, env)[0])
        say(f"train, tracking on/off #{n + 1}: {times['on'][-1]:.1f} / {times['off'][-1]:.1f} s")
    return {"on": median(times["on"]), "off": median(times["off"]), "calls": calls}


def threads(workspace: Path, repeat: int) -> dict:
    """One fit of the trained model's configuration at each thread setting: one warm-up fit,
    then rounds in a rotating order (so no setting always runs first)."""
    import lightgbm as lgb
    import pandas as pd

    from mlpipeline.features.transform import transform_target
    from mlpipeline.model.boosting import thread_count

    summary = json.loads((workspace / "models/lgbm/summary.json").read_text())
    frame = pd.read_parquet(workspace / "data/features/train.parquet")
    y = transform_target(frame[summary["target"]].to_numpy(float), summary["target_transform"])
    base = {k: v for k, v in summary["lightgbm_params"].items() if k != "num_threads"}
    rounds = summary["best_trial"]["best_iteration"]
    data = lgb.Dataset(frame[summary["features"]], label=y, params=base).construct()
    project = thread_count(0)
    settings: dict[str, int | None] = {"1": 1, "2": 2, "LightGBM default": None}
    if str(project) not in settings:  # the project's count is timed once, as one of the settings
        settings[str(project)] = project
    names = list(settings)

    def fit(count: int | None) -> float:
        start = time.perf_counter()
        lgb.train(base | ({} if count is None else {"num_threads": count}), data, rounds)
        return time.perf_counter() - start

    fit(project)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in names}
    for n in range(repeat):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            times[name].append(fit(settings[name]))
    medians = {name: median(values) for name, values in times.items()}
    return {"seconds": medians, "project": str(project), "rounds": rounds}


def serving(workspace: Path, requests: int, batches: int) -> dict:
    from benchmarks import serving as bench

    model = workspace / "models/pyfunc"
    rows = bench.request_rows(model, workspace / bench.ROWS, requests, batches)
    return bench.measure(model, rows, requests, batches)


# ---- the report ----------------------------------------------------------------------------


def verdict(ratio: float, target: float) -> str:
    return f"≤ {target:g}: {'met' if ratio <= target else 'not met'}"


def report(results: dict, facts: dict[str, str]) -> str:
    table = ["| measure | pipeline | baseline | ratio | target |", "|---|---|---|---|---|"]
    rows = [
        *end_to_end_rows(results["end_to_end"], results["noop"], results["params"]),
        *startup_rows(results["startup"]),
        *tracking_rows(results["tracking"], results["threads"]),
        *serving_rows(results["serving"]),
    ]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    e2e, start = results["end_to_end"], results["startup"]
    worst = max(sum(s["unused"].values()) for s in start["stages"].values())
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in e2e["stages"].items())
    notes = [
        f"- end to end: runs {_list(e2e['runs'])} s; bare {_list(e2e['bare_runs'])} s; "
        f"{e2e['trials']} search trials; test RMSE pipeline {e2e['rmse'][0]:.2f}, "
        f"bare {e2e['rmse'][1]:.2f}",
        f"- `dvc repro --force` by stage (medians): {stages}",
        f"- start-up: the most a stage spends on heavy imports it does not use: {worst:.2f} s "
        f"({verdict(worst, TARGETS['unused_imports'])})",
    ]
    head = [f"- {k}: {v}" for k, v in facts.items()]
    title = "# The pipeline against the bare libraries"
    return "\n".join([title, "", *head, "", *table, "", *notes, ""])


def end_to_end_rows(e2e: dict, idle: dict, change: dict) -> list[tuple[str, ...]]:
    full = e2e["pipeline"] / e2e["bare"]
    rebuild = idle["pipeline"] / idle["trivial"]
    return [
        (
            "1. end to end",
            f"`dvc repro --force` {e2e['pipeline']:.1f} s",
            f"bare script {e2e['bare']:.1f} s",
            f"{full:.2f}",
            verdict(full, TARGETS["end_to_end"]),
        ),
        (
            "2. no-op rebuild",
            f"`dvc repro` {idle['pipeline']:.2f} s",
            f"trivial 5 stages {idle['trivial']:.2f} s",
            f"{rebuild:.2f}",
            verdict(rebuild, TARGETS["noop"]),
        ),
        (
            "3. params change (`package.gate.margin`)",
            f"`dvc repro` {change['seconds']:.1f} s",
            "",
            "",
            f"ran: {', '.join(change['ran']) or 'nothing'}",
        ),
    ]


def startup_rows(start: dict) -> list[tuple[str, ...]]:
    rows = []
    for stage, found in start["stages"].items():
        unused = ", ".join(f"{k} {v:.2f} s" for k, v in found["unused"].items()) or "none"
        rows.append(
            (
                f"4. start-up: {stage}",
                f"`import stages.{stage}` {found['seconds']:.2f} s",
                f"`import pandas` {start['pandas']:.2f} s",
                f"+{found['seconds'] - start['pandas']:.2f} s",
                f"unused heavy imports: {unused}",
            )
        )
    return rows


def tracking_rows(track: dict, fit: dict) -> list[tuple[str, ...]]:
    logged = track["on"] / track["off"]
    seconds, project = fit["seconds"], fit["project"]
    threaded = seconds[project] / min(seconds.values())
    others = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items() if k != project)
    return [
        (
            f"5. tracking (train, {track['calls']} calls)",
            f"MLflow on {track['on']:.1f} s",
            f"off {track['off']:.1f} s",
            f"{logged:.3f}",
            verdict(logged, TARGETS["tracking"]),
        ),
        (
            f"6. threads (one fit, {fit['rounds']} rounds)",
            f"project's setting ({project}) {seconds[project]:.2f} s",
            others,
            f"{threaded:.2f}",
            verdict(threaded, TARGETS["threads"]),
        ),
    ]


def serving_rows(serve: dict) -> list[tuple[str, ...]]:
    from benchmarks.serving import BATCH_ROWS

    def latency(values: list[float]) -> str:
        return f"{median(values) * 1000:.1f} / {percentile(values, 99) * 1000:.1f} ms"

    server, pyfunc = serve["server_1"], serve["pyfunc_1"]
    rate_server = BATCH_ROWS / median(serve["server_k"])
    rate_pyfunc = BATCH_ROWS / median(serve["pyfunc_k"])
    return [
        (
            "7. serving, 1-row p50 / p99",
            f"HTTP {latency(server)}",
            f"pyfunc {latency(pyfunc)}",
            f"{median(server) / median(pyfunc):.2f}",
            "",
        ),
        (
            f"7. serving, {BATCH_ROWS:,}-row requests",
            f"HTTP {rate_server:,.0f} rows/s",
            f"pyfunc {rate_pyfunc:,.0f} rows/s",
            f"{rate_server / rate_pyfunc:.2f}",
            "",
        ),
    ]


def _list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def context(args: argparse.Namespace, seconds: float, load: tuple) -> dict[str, str]:
    packages = ("dvc", "mlflow", "great-expectations", "lightgbm", "scikit-optimize", "pandas")
    return {
        "date": utc_now(),
        "machine": machine(),
        "versions": versions(packages),
        "command": f"`python -m benchmarks --repeat {args.repeat}`",
        "medians of": f"{args.repeat} runs (no-op and start-up: {2 * args.repeat})",
        "load average (1 min) at start": f"{load:.2f}",
        "benchmark wall time": f"{seconds / 60:.1f} min",
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tracking-calls", type=int, default=6, help="search calls, item 5")
    parser.add_argument("--requests", type=int, default=200, help="1-row serving requests")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    started, load = time.perf_counter(), load_1min()

    def say(text: str) -> None:
        stamp = f"[{time.perf_counter() - started:6.0f} s]"
        print(stamp, text, file=sys.stderr, flush=True)  # noqa: T201 - progress

    root = Path(tempfile.mkdtemp(prefix="benchmarks-", dir=args.workdir))
    try:
        workspace = make_workspace(root)
        say(f"workspace {workspace}")
        results = {"end_to_end": end_to_end(workspace, root / "bare", args.repeat, say)}
        results["noop"] = noop(workspace, trivial_pipeline(root), 2 * args.repeat)
        say("no-op done")
        results["params"] = params_change(workspace, args.repeat)
        say("params change done")
        results["startup"] = startup(workspace, 2 * args.repeat)
        say("start-up done")
        results["tracking"] = tracking(workspace, root, args.tracking_calls, args.repeat, say)
        results["threads"] = threads(workspace, max(5, 2 * args.repeat))
        say("threads done")
        results["serving"] = serving(workspace, args.requests, max(10, args.requests // 10))
        say("serving done")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(results, context(args, time.perf_counter() - started, load))
    args.out.write_text(text)
    print(text)  # noqa: T201 - the benchmark's output
    return 0
