"""One copy of the repository per test session, with the pipeline already run (tiny search
budget), and helpers to run commands in it the way a user would."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.helpers import copy_repository

BIN = Path(sys.executable).parent
STAGES = ["ingest", "validate", "featurize", "train", "package"]


def env() -> dict[str, str]:
    """The environment without MLflow/DVC settings, with this interpreter's tools first."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))
    }
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"
    return clean


def run(
    args: list[str], cwd: Path, check: bool = True, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    """Until ``url`` answers; fails with the server's stderr if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            server.stderr.seek(0)
            raise AssertionError(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds}s")


@contextmanager
def local_server(
    command: list[str], ready: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``command`` (``{port}`` in it becomes a free localhost port) until the block ends;
    yields its base URL once ``ready`` (a path) answers."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - a pipe nobody reads would fill and stall
    server = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in command],
        cwd=cwd,
        env={**env(), **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # the server and its workers, stopped together
    )
    server.stderr = log
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}{ready}", server)
        yield url
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group; SIGKILL what is left after 30 s."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def set_params(repo: Path, edit) -> None:
    """Edit params.yaml in ``repo`` (``edit`` changes the loaded dict in place)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def restore(repo: Path) -> None:
    """Back to the last good, committed results: git restores params, dvc.lock and reports;
    ``dvc checkout`` restores the data and models they name from the DVC cache."""
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout"], repo)


def tree_digest(folder: Path) -> str:
    """One hash over every file under ``folder`` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


_copy_repository = copy_repository  # the repository as it is now, in a folder of its own


def git_commit(repo: Path, message: str) -> None:
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
    if not (repo / ".git").exists():
        run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", *ident, "commit", "-q", "-m", message], repo)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """A git repository copied from this one, after a full ``dvc repro`` with 3 search calls."""
    repo = _copy_repository(tmp_path_factory.mktemp("repo"))
    (repo / "dvc.lock").unlink(missing_ok=True)

    def small(p: dict) -> None:
        p["train"]["search"].update(n_calls=3, n_initial_points=2, max_rounds=300)
        p["package"]["max_batch_rows"] = 5000

    set_params(repo, small)
    git_commit(repo, "copy")
    run(["dvc", "repro"], repo)
    git_commit(repo, "pipeline run")
    return repo


def start_queue(repo: Path, extra_env: dict[str, str] | None = None) -> None:
    """``dvc queue start -j 2`` with its output in a file: the workers it starts inherit the
    output (a pipe would keep the call waiting until they exit) and the environment."""
    with open(repo.parent / "queue-start.log", "w") as out:
        done = subprocess.run(
            ["dvc", "queue", "start", "-j", "2"],
            cwd=repo,
            env={**env(), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    assert done.returncode == 0, (repo.parent / "queue-start.log").read_text()


def wait_for_queue(repo: Path, seconds: float = 1500) -> str:
    """``dvc queue status`` once nothing is running or queued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not any(word in status for word in ("Running", "Queued")):
            return status
        time.sleep(5)
    raise AssertionError(f"queue still busy after {seconds}s:\n{status}")
