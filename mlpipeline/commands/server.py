"""``python -m mlpipeline server``: a team's tracking server on this machine, to try it out and
for tests: ``mlflow server`` with its runs and registry in PostgreSQL (``--postgres``) and its
artifacts in an S3-compatible bucket (``--s3``: moto's server), served to the clients
(``--serve-artifacts``: clients need no storage credentials). Everything listens on 127.0.0.1.

python -m mlpipeline server [--postgres] [--s3] [--home DIR] [--port N]

Once the server answers it prints the line to run in the shells that use it

    export MLFLOW_TRACKING_URI=http://127.0.0.1:<port>

and runs until Ctrl-C or SIGTERM, which stop the server, the bucket and the database, in that
order. ``--home`` (default ``.cache/team-server``) keeps the database cluster (or, without
``--postgres``, a SQLite file), the artifacts (without ``--s3``) and the logs: start it again
with the same ``--home`` and ``--port`` and the clients go on where they were. moto keeps its
bucket in memory: with ``--s3`` the artifacts last as long as the stack.

PostgreSQL refuses to run as root: as root, the cluster is owned by and runs as ``nobody``
(``--db-user``), so ``--home`` must be a folder that user can reach (e.g. under /tmp).

For production, run ``mlflow server`` on the team's own database and bucket (docs/scale.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from mlpipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

DATABASE = "mlflow"
BUCKET = "mlflow-artifacts"
# moto accepts any keys; these are placeholders for the local bucket, not credentials.
LOCAL_S3_KEYS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
READY_SECONDS = 120


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline server", description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="runs and registry in PostgreSQL")
    parser.add_argument("--s3", action="store_true", help="artifacts in a local S3 bucket (moto)")
    parser.add_argument("--home", type=Path, default=Path(".cache/team-server"))
    parser.add_argument("--port", type=int, default=0, help="the server's port (0: a free one)")
    parser.add_argument("--workers", type=int, default=2, help="the server's worker processes")
    parser.add_argument("--db-user", default="nobody", help="who runs PostgreSQL when root")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tracking_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def server_command(port: int, backend: str, artifacts: str, workers: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1 with ``backend`` and served ``artifacts``."""
    return [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--backend-store-uri", backend, "--workers", str(workers)),
        *("--artifacts-destination", artifacts, "--serve-artifacts"),
    ]


def postgres_uri(port: int) -> str:
    return f"postgresql+psycopg2://{DATABASE}@127.0.0.1:{port}/{DATABASE}"


def as_user(user: str | None) -> list[str]:
    """The prefix that runs a PostgreSQL tool: as ``user`` when this process is root."""
    return ["runuser", "-u", user, "--"] if user else []


def postgres_user(wanted: str) -> str | None:
    return wanted if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise PipelineError(
            f"server --postgres: `{name}` is not on PATH; install PostgreSQL (e.g. `apt install "
            f"postgresql`, then add /usr/lib/postgresql/<version>/bin to PATH) or drop --postgres"
        )
    return found


def _tool(user: str | None, *args: str, log_file: Path | None = None) -> None:
    done = subprocess.run(
        [*as_user(user), *args], capture_output=True, text=True, timeout=READY_SECONDS
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-800:]
        hint = f"; its log: {log_file}" if log_file else ""
        raise PipelineError(f"server --postgres: `{' '.join(args[:2])}` failed: {detail}{hint}")


def prepare_cluster(folder: Path, user: str | None) -> None:
    """A database cluster in ``folder`` (created once), owned by ``user`` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(folder, user)
        reachable = subprocess.run([*as_user(user), "test", "-w", str(folder)], check=False)
        if reachable.returncode != 0:
            raise PipelineError(
                f"server --postgres: PostgreSQL refuses to run as root, so it runs as '{user}', "
                f"who cannot reach {folder}; pass --home in a folder others can enter (e.g. "
                f"--home /tmp/team-server) or --db-user another user"
            )
    if not (folder / "PG_VERSION").exists():
        initdb = require_tool("initdb")
        _tool(user, initdb, "-D", str(folder), "-U", DATABASE, "--auth=trust", "-E", "UTF8")


def create_database(port: int) -> None:
    """The database ``DATABASE`` in the cluster listening on ``port``, created once."""
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user=DATABASE, dbname="postgres")
    try:
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        connection.close()


@contextmanager
def postgres(home: Path, user: str | None) -> Iterator[str]:
    """PostgreSQL on a free 127.0.0.1 port with its cluster in ``home/postgres``; yields the
    database's URI and stops it (fast shutdown) when the block ends."""
    pg_ctl = require_tool("pg_ctl")
    folder = home / "postgres"
    prepare_cluster(folder, user)
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {folder}"  # the socket in the cluster, not /run
    server_log = folder / "server.log"
    start = ("start", "-w", "-D", str(folder), "-l", str(server_log), "-o", options)
    _tool(user, pg_ctl, *start, log_file=server_log)
    try:
        create_database(port)
        log.info("PostgreSQL on 127.0.0.1:%d, cluster %s", port, folder)
        yield postgres_uri(port)
    finally:
        _tool(user, pg_ctl, "stop", "-w", "-m", "fast", "-D", str(folder))


@contextmanager
def s3_bucket() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free 127.0.0.1 port with the bucket ``BUCKET``; yields the
    environment the tracking server needs to reach it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        keys = {name.lower(): value for name, value in LOCAL_S3_KEYS.items()}  # boto3's names
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
        s3.create_bucket(Bucket=BUCKET)
        log.info("S3 endpoint %s, bucket %s (in memory)", endpoint, BUCKET)
        yield {"MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"} | dict(
            LOCAL_S3_KEYS
        )
    finally:
        server.stop()


def wait_until_ready(url: str, process: subprocess.Popen, server_log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server_log.read_text(errors="replace")[-1500:]
            raise PipelineError(f"server: mlflow server exited ({process.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310 - http, local
                return
        except OSError:
            time.sleep(0.5)
    raise PipelineError(f"server: {url} did not answer within {READY_SECONDS} s; see {server_log}")


@contextmanager
def mlflow_server(
    command: list[str], env: dict[str, str], server_log: Path
) -> Iterator[subprocess.Popen]:
    """``command`` in its own process group until the block ends (SIGTERM, then SIGKILL)."""
    with open(server_log, "ab") as errors:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=errors,
            stderr=errors,
            start_new_session=True,  # the server and its workers, stopped together
        )
    try:
        wait_until_ready(
            tracking_url(int(command[command.index("--port") + 1])), process, server_log
        )
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class StopSignalError(Exception):
    """SIGTERM or SIGINT arrived."""


def _stop_on_signal(signum: int, frame: object) -> None:
    for other in (signal.SIGTERM, signal.SIGINT):  # the shutdown itself is not interrupted
        signal.signal(other, signal.SIG_IGN)
    raise StopSignalError(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_on_signal)
    port = args.port or free_port()
    try:
        with ExitStack() as stack:
            backend = f"sqlite:///{home / 'mlflow.db'}"
            if args.postgres:
                backend = stack.enter_context(postgres(home, postgres_user(args.db_user)))
            artifacts, env = str(home / "artifacts"), {}
            if args.s3:
                env = stack.enter_context(s3_bucket())
                artifacts = f"s3://{BUCKET}/"
            command = server_command(port, backend, artifacts, args.workers)
            process = stack.enter_context(mlflow_server(command, env, home / "mlflow-server.log"))
            url = tracking_url(port)
            log.info("mlflow server %s: backend %s, artifacts %s", url, backend, artifacts)
            print(f"export MLFLOW_TRACKING_URI={url}", flush=True)  # noqa: T201 - for the shell
            while process.poll() is None:
                time.sleep(0.5)
            raise PipelineError(
                f"server: mlflow server exited ({process.returncode}); see "
                f"{home / 'mlflow-server.log'}"
            )
    except StopSignalError as stopped:
        log.info("stopped (%s): server, bucket and database shut down", stopped)
        return 0
