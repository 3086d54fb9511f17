"""Benchmark serving: the model server against in-process ``pyfunc.predict`` and the bare booster.

On the packaged model in ``models/pyfunc`` (run ``dvc repro`` first), in one run:

- **server**: ``mlflow models serve --env-manager local`` on a free localhost port, requests
  sent from this process over a kept-open HTTP connection (``http.client``), ``dataframe_split``
  JSON bodies built before timing;
- **pyfunc**: ``mlflow.pyfunc.load_model(...).predict(rows)`` in this process (request checks,
  featurization, booster, output), on the same rows;
- **booster**: ``lightgbm.Booster.predict`` on the model's feature matrix built before timing
  (``mlpipeline.features.transform.feature_matrix``, what the packaged model predicts
  on) — the floor.

1-row requests: p50 and p99 latency over ``--requests`` calls (rows drawn from the test split).
1,000-row requests: rows per second from the median of ``--batches`` calls. Every figure is
from the same process tree and the same rows; ratios are against the in-process pyfunc and the
bare booster.

The rollout router (``mlpipeline/serve/router.py``) is built from the same packaged model as
champion (and as challenger) in four settings: mode ``off`` without its prediction log (today's
behaviour), ``off`` with the log, ``shadow`` and ``canary`` (50%, keyed by each row's values:
the requests carry no key column) with the log. The packaged model and the four routers are
served side by side and take turns, 25 requests (5 of 1,000 rows) at a time, so a busy
machine slows them alike; the log's cost is the difference of ``off`` with and without it.

    python -m benchmarks.serving [--requests 300] [--batches 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd

from benchmarks.harness import load_1min, machine, percentile, utc_now, versions

log = logging.getLogger(__name__)

MODEL = Path("models/pyfunc")
ROWS = Path("data/features/test.parquet")  # held-out rows; the model takes their input columns
OUT = Path("benchmarks/results_serving.md")
BATCH_ROWS = 1000
HOST = ("-h", "127.0.0.1", "-p")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int) -> subprocess.Popen:
    """``mlflow models serve`` of ``model``; its log goes to a temporary file (a pipe nobody
    reads fills up with the per-request lines and stalls the server)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    log = tempfile.TemporaryFile()  # noqa: SIM115 - deleted when the process ends
    server = subprocess.Popen(
        [
            str(mlflow),
            "models",
            "serve",
            "-m",
            str(model),
            "--env-manager",
            "local",
            *HOST,
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"server exited: {log.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the model server did not answer /ping within 120 s")


# Exact contributions (TreeSHAP) cost ~15 ms per row on one thread for the diamonds model
# (599 trees of up to 95 leaves): 1,000-row explained calls are timed 3 times, not --batches.
EXPLAIN_BATCHES = 3


def body(rows: pd.DataFrame, explain: bool = False) -> bytes:
    split = json.loads(rows.to_json(orient="split", index=False))
    params = {"params": {"explain": True}} if explain else {}
    return json.dumps({"dataframe_split": split, **params}).encode()


def timings(call: Callable[[int], object], count: int, warmup: int = 5) -> list[float]:
    """Seconds per call of ``call(i)``, after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(i)
    out = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - start)
    return out


def request_rows(model: Path, held_out: Path, requests: int, batches: int) -> pd.DataFrame:
    """Enough held-out rows (the model's input columns) for every request, drawn seeded."""
    inputs = json.loads((model / "artifacts" / "metadata.json").read_text())["spec"]["inputs"]
    needed = max(requests, batches * BATCH_ROWS) + 10 * BATCH_ROWS
    frame = pd.read_parquet(held_out, columns=inputs)
    frame = frame.astype({c: object for c in frame.select_dtypes("category")})
    rows = frame.sample(needed, replace=needed > len(frame), random_state=0)
    return rows.reset_index(drop=True)


def measure(model_dir: Path, rows: pd.DataFrame, requests: int, batches: int) -> dict:
    import mlflow

    model = mlflow.pyfunc.load_model(str(model_dir))
    inner = model.unwrap_python_model()
    singles = [rows.iloc[[i]] for i in range(requests + 5)]
    big = [rows.iloc[i * BATCH_ROWS : (i + 1) * BATCH_ROWS] for i in range(batches + 5)]
    features_1 = [inner._features.feature_matrix(r, inner._spec) for r in singles]
    features_k = [inner._features.feature_matrix(r, inner._spec) for r in big]
    booster, threads = inner._booster, inner._threads
    calls = {
        "server_1": ([body(r) for r in singles], requests),
        "server_k": ([body(r) for r in big], batches),
        "server_explain_1": ([body(r, explain=True) for r in singles], requests),
        "server_explain_k": ([body(r, explain=True) for r in big], EXPLAIN_BATCHES),
    }
    results = server_timings(model_dir, calls)
    results["pyfunc_1"] = timings(lambda i: model.predict(singles[i]), requests)
    results["pyfunc_k"] = timings(lambda i: model.predict(big[i]), batches)
    explain = {"explain": True}
    results["pyfunc_explain_1"] = timings(lambda i: model.predict(singles[i], explain), requests)
    results["pyfunc_explain_k"] = timings(
        lambda i: model.predict(big[i], explain), EXPLAIN_BATCHES, warmup=1
    )
    results["booster_1"] = timings(
        lambda i: booster.predict(features_1[i], num_threads=threads), requests
    )
    results["booster_k"] = timings(
        lambda i: booster.predict(features_k[i], num_threads=threads), batches
    )
    return results


def server_timings(model_dir: Path, calls: dict[str, tuple[list[bytes], int]]) -> dict:
    """Seconds per request to the model server, over one kept-open connection: for each
    name, ``(bodies, calls timed)``."""
    port = free_port()
    server = start_server(model_dir, port)
    try:
        post = poster(http.client.HTTPConnection("127.0.0.1", port, timeout=60))
        return {
            name: timings(lambda i, b=bodies: post(b[i]), count, warmup=1 if count < 5 else 5)
            for name, (bodies, count) in calls.items()
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def poster(connection: http.client.HTTPConnection) -> Callable[[bytes], None]:
    """A function that posts a JSON body to ``/invocations`` and reads the whole answer; a
    kept-open connection the server closed meanwhile (idle for its keep-alive time) is opened
    again."""

    def post(payload: bytes) -> None:
        for attempt in (1, 2):
            try:
                headers = {"Content-Type": "application/json"}
                connection.request("POST", "/invocations", payload, headers)
                response = connection.getresponse()
                response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                if attempt == 2:
                    raise
        if response.status != 200:
            raise SystemExit(f"server answered {response.status}")

    return post


PACKAGED = "packaged model (models/pyfunc)"
ROUTER_MODES = (  # label, rollout.mode, whether the prediction log is on
    ("off, no log", "off", False),
    ("off + log", "off", True),
    ("shadow + log", "shadow", True),
    ("canary 50% + log", "canary", True),
)


def router_dirs(model: Path, scratch: Path) -> dict[str, Path]:
    """One router model folder per setting of ``ROUTER_MODES``, with ``model`` as champion
    (and challenger), logging under ``scratch``."""
    import mlflow

    from mlpipeline.core.config import RolloutParams
    from mlpipeline.serve.rollout import router_kwargs, router_settings

    dirs = {}
    for i, (label, mode, logged) in enumerate(ROUTER_MODES):
        log_dir = str(scratch / f"log-{i}") if logged else ""
        rollout = RolloutParams(mode=mode, canary_share=0.5, log_dir=log_dir)
        versions = {"champion": "1"} if mode == "off" else {"champion": "1", "challenger": "2"}
        settings = router_settings(rollout, versions)
        kwargs = router_kwargs({role: model for role in versions}, settings, scratch / f"b-{i}")
        mlflow.pyfunc.save_model(str(scratch / f"router-{i}"), **kwargs)
        dirs[label] = scratch / f"router-{i}"
    return dirs


@contextmanager
def served(model_dir: Path) -> Iterator[Callable[[bytes], None]]:
    """A model server of ``model_dir`` for the block: yields a function that posts a body."""
    port = free_port()
    server = start_server(model_dir, port)
    try:
        yield poster(http.client.HTTPConnection("127.0.0.1", port, timeout=60))
    finally:
        server.terminate()
        server.wait(timeout=60)


def in_blocks(calls: dict[str, Callable[[int], object]], count: int, block: int = 25) -> dict:
    """Seconds per call of each ``calls[label](i)``: the labels take turns ``block`` calls at a
    time (who goes first rotates), so every setting sees the same machine, load and all, while
    each one's calls follow each other as a single client's do (the work a server does after
    answering, such as writing its log, competes with its own next request)."""
    labels, out = list(calls), {label: [] for label in calls}
    for label in labels:  # warm-up
        for i in range(5):
            calls[label](i)
    for turn, first in enumerate(range(0, count, block)):
        for label in labels[turn % len(labels) :] + labels[: turn % len(labels)]:
            calls[label](first)  # untimed: the turn starts on an open connection
            for i in range(first, min(count, first + block)):
                start = time.perf_counter()
                calls[label](i)
                out[label].append(time.perf_counter() - start)
    return out


def measure_routers(model_dir: Path, rows: pd.DataFrame, requests: int, batches: int) -> dict:
    """The packaged model and the router in each setting, served side by side and timed
    interleaved (1-row and ``BATCH_ROWS``-row requests), and the log's size per row."""
    import tempfile

    singles = [body(rows.iloc[[i]]) for i in range(requests + 5)]
    big = [body(rows.iloc[i * BATCH_ROWS : (i + 1) * BATCH_ROWS]) for i in range(batches + 5)]
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as servers:
        dirs = {PACKAGED: model_dir, **router_dirs(model_dir, Path(scratch))}
        posts = {label: servers.enter_context(served(folder)) for label, folder in dirs.items()}
        ones = in_blocks({k: lambda i, p=p: p(singles[i]) for k, p in posts.items()}, requests)
        many = in_blocks({k: lambda i, p=p: p(big[i]) for k, p in posts.items()}, batches, 5)
        servers.close()  # a graceful stop writes the logs out
        size = log_size(Path(scratch))
    found = {label: {"server_1": ones[label], "server_k": many[label]} for label in posts}
    return found | {"log bytes per row": size}


def log_size(scratch: Path) -> float:
    """Mean bytes per logged row over every router's log."""
    files = list(scratch.glob("log-*/*.jsonl"))
    size = sum(f.stat().st_size for f in files)
    lines = sum(f.read_bytes().count(b"\n") for f in files)
    return size / max(lines, 1)


def router_table(results: dict) -> str:
    ms = 1000
    base = statistics.median(results[ROUTER_MODES[0][0]]["server_1"]) * ms
    lines = [
        "| served model (HTTP, taking turns) | 1-row p50 (ms) | 1-row p99 (ms) "
        f"| p50 − router off, no log (ms) | rows/s at {BATCH_ROWS:,} rows |",
        "|---|---|---|---|---|",
    ]
    for label in [PACKAGED, *(mode[0] for mode in ROUTER_MODES)]:
        one, many = results[label]["server_1"], results[label]["server_k"]
        p50 = statistics.median(one) * ms
        name = label if label == PACKAGED else f"router: {label}"
        lines.append(
            f"| {name} | {p50:.2f} | {percentile(one, 99) * ms:.2f} | {p50 - base:+.2f} "
            f"| {BATCH_ROWS / statistics.median(many):,.0f} |"
        )
    logged = statistics.median(results[ROUTER_MODES[1][0]]["server_1"]) * ms
    lines.append(
        f"\nThe prediction log's cost at the 1-row p50 (off + log − off, no log): "
        f"{logged - base:+.2f} ms (target: within 1 ms). Shadow and canary score every row with "
        f"both models (the one that does not answer in the log's thread). Log size: "
        f"{results['log bytes per row']:.0f} bytes per row (JSON lines)."
    )
    return "\n".join(lines)


PATHS = (
    ("model server (HTTP)", "server"),
    ("in-process pyfunc.predict", "pyfunc"),
    ("bare Booster.predict (features prebuilt)", "booster"),
    ("model server (HTTP), `explain: true`", "server_explain"),
    ("in-process pyfunc.predict, `explain: true`", "pyfunc_explain"),
)


def table(results: dict) -> str:
    ms = 1000
    rows = []
    for label, key in PATHS:
        one, many = results[f"{key}_1"], results[f"{key}_k"]
        p50, p99 = statistics.median(one) * ms, percentile(one, 99) * ms
        rows.append((label, p50, p99, BATCH_ROWS / statistics.median(many)))
    base_p50, base_rate = rows[1][1], rows[1][3]
    floor_p50, floor_rate = rows[2][1], rows[2][3]
    lines = [
        "| path | 1-row p50 (ms) | 1-row p99 (ms) | p50 ÷ pyfunc | p50 ÷ booster "
        f"| rows/s at {BATCH_ROWS:,} rows | rows/s ÷ pyfunc | rows/s ÷ booster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, p50, p99, rate in rows:
        lines.append(
            f"| {label} | {p50:.2f} | {p99:.2f} | {p50 / base_p50:.2f} | {p50 / floor_p50:.1f} "
            f"| {rate:,.0f} | {rate / base_rate:.2f} | {rate / floor_rate:.2f} |"
        )
    return "\n".join(lines)


def context(requests: int, batches: int, seconds: float, load: tuple) -> dict[str, str]:
    packages = versions(("mlflow", "lightgbm", "pandas", "numpy"))
    return {
        "date": utc_now(),
        "machine": machine(),
        "packages": packages,
        "calls": f"{requests} 1-row and {batches} {BATCH_ROWS:,}-row calls per path, "
        "after 5 warm-up calls",
        "load average before (1 min)": f"{load:.2f}",
        "benchmark wall time": f"{seconds:.0f} s",
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="1-row calls per path")
    parser.add_argument("--batches", type=int, default=30, help="1,000-row calls per path")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    if not (args.model / "MLmodel").exists():
        raise SystemExit(f"no packaged model in {args.model}: run `dvc repro` first")
    started, load = time.perf_counter(), load_1min()
    rows = request_rows(args.model, ROWS, args.requests, args.batches)
    results = measure(args.model, rows, args.requests, args.batches)
    routers = measure_routers(args.model, rows, args.requests, args.batches)
    facts = context(args.requests, args.batches, time.perf_counter() - started, load)
    command = shlex.join(["python", "-m", "benchmarks.serving", *argv])
    parts = [
        "# Serving benchmark: model server vs in-process pyfunc vs bare booster",
        f"Command (from the repository root): `{command}`",
        "\n".join(f"- {k}: {v}" for k, v in facts.items()),
        table(results),
        "## The rollout router and the cost of its prediction log",
        router_table(routers),
    ]
    report = "\n\n".join(parts) + "\n"
    args.out.write_text(report)
    print(report)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
