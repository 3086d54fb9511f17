"""What logging to a team's tracking server costs a stage, against the local SQLite store.

python -m benchmarks.team_server [--repeat 3] [--calls 6] [--out benchmarks/results_team_server.md]

In a copy of the repository: ``dvc repro featurize`` (tracking off), then the train stage with
a search of ``--calls`` calls, interleaved: MLflow off, the local store (``mlflow.db`` in the
copy), and the team stack (``python -m mlpipeline server --postgres --s3``: PostgreSQL, moto's
S3, ``mlflow server`` with served artifacts). One warm-up run of each first (the local store's
tables and the server's experiment are created then); medians of ``--repeat`` runs. The
target: the stage against the server ≤ 1.10× against the local store.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import yaml

from benchmarks.harness import load_1min
from benchmarks.pipeline import PYTHON, make_workspace, run, train_command, workspace_env

OUT = Path(__file__).with_name("results_team_server.md")
TARGET = 1.10


def start_stack(home: Path) -> tuple[subprocess.Popen, str]:
    command = [PYTHON, "-m", "mlpipeline", "server", "--postgres", "--s3", "--home", str(home)]
    stack = subprocess.Popen(
        command,
        env=workspace_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert stack.stdout is not None
    line = stack.stdout.readline()
    if not line.startswith("export MLFLOW_TRACKING_URI="):
        stack.kill()
        raise SystemExit(f"the stack did not start: {line!r}")
    return stack, line.split("=", 1)[1].strip()


def measure(workspace: Path, root: Path, uri: str, calls: int, repeat: int) -> dict:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    search = params["train"]["search"]
    search.update(n_calls=calls, n_initial_points=min(search["n_initial_points"], calls))
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    modes = {
        "off": {"PIPELINE_TRACKING": "off"},
        "local": {"MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}"},
        "server": {"MLFLOW_TRACKING_URI": uri},
    }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for n in range(repeat + 1):  # the first round warms up and is not counted
        for mode, extra in modes.items():
            seconds, _ = run(train_command(path, root / f"{mode}-{n}"), workspace,
                             workspace_env(extra))  # fmt: skip
            if n:
                times[mode].append(seconds)
        if n:
            said = ", ".join(f"{m} {t[-1]:.1f} s" for m, t in times.items())
            print(f"round {n}: {said}", file=sys.stderr, flush=True)  # noqa: T201 - progress
    return {mode: median(t) for mode, t in times.items()} | {"runs": times, "calls": calls}


def report(found: dict, load: float, repeat: int) -> str:
    ratio = found["server"] / found["local"]
    overhead = {m: found[m] - found["off"] for m in ("local", "server")}
    verdict = "met" if ratio <= TARGET else "missed"
    overhead_ratio = (
        f"{overhead['server'] / overhead['local']:.2f}"
        if overhead["local"] > 0
        else "not defined (the local store's overhead is within the noise)"
    )
    command = f"python -m benchmarks.team_server --repeat {repeat} --calls {found['calls']}"
    return f"""# A stage's logging: team server against the local store

`{command}` on {time.strftime("%Y-%m-%d")},
load average (1 min) at start {load:.2f}; the train stage on diamonds, a search of
{found["calls"]} calls, medians of {repeat} interleaved runs after one warm-up of each.

| tracking | train stage (s) | over tracking off (s) |
|---|---|---|
| off | {found["off"]:.1f} | - |
| local SQLite store | {found["local"]:.1f} | {overhead["local"]:+.1f} |
| team server (PostgreSQL, S3) | {found["server"]:.1f} | {overhead["server"]:+.1f} |

The stage against the server ÷ against the local store: **{ratio:.3f}** (target ≤
{TARGET:.2f}: {verdict}). The logging alone (each over tracking off), server ÷ local store:
{overhead_ratio}.

Every run (s): {found["runs"]}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    load = load_1min()
    root = Path(tempfile.mkdtemp(prefix="team-server-bench-"))
    root.chmod(0o755)  # PostgreSQL runs as an unprivileged user when this runs as root
    stack = None
    try:
        workspace = make_workspace(root / "copy")
        run(["dvc", "repro", "featurize"], workspace, workspace_env({"PIPELINE_TRACKING": "off"}))
        stack, uri = start_stack(root / "stack")
        found = measure(workspace, root, uri, args.calls, args.repeat)
    finally:
        if stack is not None:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    text = report(found, load, args.repeat)
    args.out.write_text(text)
    print(text)  # noqa: T201 - the benchmark's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
