"""A team's tracking server, started as a user starts it (``python -m mlpipeline server
--postgres --s3``): two clones queueing experiments into it at once, the registry's champion
shared by both, serving from it, and the server stopped in the middle of a run."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.conftest import (
    BIN,
    STAGES,
    env,
    free_port,
    run,
    set_params,
    start_queue,
    wait_for,
    wait_for_queue,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pg_ctl") is None, reason="PostgreSQL (pg_ctl) not installed"),
]

NAME = "diamonds-price"
LIGHT = ["-S", "runtime.num_threads=1", "-S", "runtime.search_jobs=1"]
# A stage talking to a server that is gone gives up after one retry, not MLflow's default
# seven with exponential backoff (minutes).
IMPATIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@pytest.fixture(scope="module")
def shared_folder() -> Iterator[Path]:
    """A folder the unprivileged user PostgreSQL runs as (when the tests run as root) can
    enter: pytest's own temporary folders are private to their owner."""
    folder = Path(tempfile.mkdtemp(prefix="team-server-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def team_stack(home: Path, *flags: str, port: int = 0) -> Iterator[str]:
    """``python -m mlpipeline server --postgres <flags>`` until the block ends (SIGTERM, as
    Ctrl-C would); yields the tracking URI it printed. Checks that it stopped cleanly."""
    command = [sys.executable, "-m", "mlpipeline", "server", "--postgres", *flags]
    command += ["--home", str(home), "--port", str(port or free_port())]
    log_path = home.parent / f"{home.name}.stack.log"
    with open(log_path, "ab") as log:
        stack = subprocess.Popen(
            command,
            cwd=Path(__file__).parents[2],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    try:
        yield printed_uri(stack, log_path)
    finally:
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        assert not (home / "postgres" / "postmaster.pid").exists()  # the database stopped


def printed_uri(stack: subprocess.Popen, log_path: Path, seconds: float = 180) -> str:
    assert stack.stdout is not None
    ready, _, _ = select.select([stack.stdout], [], [], seconds)
    line = stack.stdout.readline() if ready else ""
    prefix = "export MLFLOW_TRACKING_URI="
    assert line.startswith(prefix), f"{line!r}\n{log_path.read_text()[-3000:]}"
    return line.removeprefix(prefix).strip()


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def clone_of(pipeline: Path, folder: Path) -> Path:
    """The pipeline's repository as another person's clone: its own DVC cache and outputs,
    no local tracking store."""
    repo = folder / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    (repo / "mlflow.db").unlink()
    for stray in ("mlartifacts", ".dvc/tmp"):
        shutil.rmtree(repo / stray, ignore_errors=True)
    return repo


def runs_by_experiment(uri: str) -> dict[str, dict[str, object]]:
    """The server's stage runs, by DVC experiment name and stage."""
    found = client(uri).search_runs(
        [e.experiment_id for e in client(uri).search_experiments()], max_results=5000
    )
    named: dict[str, dict[str, object]] = {}
    for r in found:
        if stage := r.data.tags.get("pipeline.stage"):
            named.setdefault(r.data.tags.get("dvc.exp_name", ""), {})[stage] = r
    return named


def shown_experiments(repo: Path) -> set[str]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    return {
        rev["name"]
        for base in shown
        for exp in base.get("experiments") or []
        for rev in exp.get("revs", [])
        if rev.get("name")
    }


EXPERIMENTS = {"alice": ("alice-1", "alice-2"), "bob": ("bob-1", "bob-2")}
# Search calls of each clone's experiments, both unlike the committed lock's (else DVC rightly
# runs nothing); alice-1 and bob-1 train the same booster in two clones.
FIRST_CALLS = 4


@pytest.fixture(scope="module")
def team(pipeline, shared_folder, tmp_path_factory):
    """The stack with PostgreSQL and S3, and two clones that each queued two experiments and
    ran them with two workers, all four at once against the server."""
    home = shared_folder / "stack"
    with team_stack(home, "--s3") as uri:
        clones = {who: clone_of(pipeline, tmp_path_factory.mktemp(who)) for who in EXPERIMENTS}
        # The shared pipeline may already hold other tests' experiments (test_pipeline's).
        earlier = {who: shown_experiments(repo) for who, repo in clones.items()}
        for who, names in EXPERIMENTS.items():
            for calls, name in enumerate(names, start=FIRST_CALLS):
                command = ["dvc", "exp", "run", "--queue", "-n", name, *LIGHT]
                run([*command, "-S", f"train.search.n_calls={calls}"], clones[who])
        for who in EXPERIMENTS:
            start_queue(clones[who], {"MLFLOW_TRACKING_URI": uri})
        statuses = {who: wait_for_queue(clones[who]) for who in EXPERIMENTS}
        yield uri, clones, statuses, earlier


def test_four_experiments_from_two_clones_at_once_all_land_on_the_server(team):
    uri, clones, statuses, earlier = team
    assert all("Failed" not in status for status in statuses.values()), statuses
    runs = runs_by_experiment(uri)
    versions = {v.tags.get("dvc.exp_name"): v for v in client(uri).search_model_versions()}
    for who, names in EXPERIMENTS.items():
        new = shown_experiments(clones[who]) - earlier[who]
        assert new == set(names)  # `dvc exp show` and MLflow agree
        for calls, name in enumerate(names, start=FIRST_CALLS):
            stages = runs.get(name, {})
            assert {"train", "package"} <= set(stages), sorted(stages)
            assert all(r.info.status == "FINISHED" for r in stages.values())
            train = stages["train"]
            assert train.data.metrics["trials"] == calls
            trials = client(uri).search_runs(
                [train.info.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{train.info.run_id}'",
            )
            assert len(trials) == calls
            assert train.inputs.dataset_inputs  # the datasets it trained on
            assert versions[name].tags["train.run_id"] == train.info.run_id
    for repo in clones.values():
        assert not list(repo.rglob("mlflow.db")), "a local store was created"


def test_the_model_artifacts_are_in_the_bucket_and_reach_a_client_without_credentials(team):
    uri, clones, *_ = team
    champion = client(uri).get_model_version_by_alias(NAME, "champion")
    fetch = (
        "import mlflow, sys; from pathlib import Path; "
        "uri = mlflow.MlflowClient().get_model_version_download_uri(sys.argv[1], sys.argv[2]); "
        "print(Path(mlflow.artifacts.download_artifacts(artifact_uri=uri)) / 'MLmodel')"
    )
    keyless = {k: v for k, v in env().items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", fetch, NAME, str(champion.version)],
        cwd=clones["alice"],
        env={**keyless, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()).is_file()  # through the server: the client has no keys


def held_out_metric(uri: str, version) -> tuple[str, float]:
    package = client(uri).get_run(version.run_id)
    [(key, value)] = [(k, v) for k, v in package.data.metrics.items() if k.startswith("held_out.")]
    return key, value


def test_both_clones_see_one_champion_at_least_as_good_as_every_version_but_the_margin(team):
    uri, clones, *_ = team
    seen = {
        who: run(
            ["python", "-m", "mlpipeline", "registry", "lineage"],
            repo,
            extra_env={"MLFLOW_TRACKING_URI": uri},
        ).stdout
        for who, repo in clones.items()
    }
    assert seen["alice"] == seen["bob"] and seen["alice"].strip()
    champion = client(uri).get_model_version_by_alias(NAME, "champion")
    key, best = held_out_metric(uri, champion)
    assert key == "held_out.rmse"  # lower is better
    margin = yaml.safe_load((clones["alice"] / "params.yaml").read_text())["package"]["gate"]
    margin = margin["margin"]
    for version in client(uri).search_model_versions(f"name='{NAME}'"):
        assert best <= held_out_metric(uri, version)[1] * (1 + margin) + 1e-9


def rows_of(repo: Path, count: int) -> pd.DataFrame:
    rows = pd.read_parquet(repo / "data" / "features" / "test_rows.parquet").head(count)
    rows = rows.astype({c: object for c in rows.select_dtypes("category")})
    return rows.drop(columns=["price"])


def post(url: str, rows: pd.DataFrame) -> list:
    split = json.loads(rows.to_json(orient="split", index=False))
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps({"dataframe_split": split}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


@contextmanager
def served(model_uri: str, repo: Path, tracking: str) -> Iterator[str]:
    port = free_port()
    command = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    with open(repo.parent / "serve.log", "ab") as errors:
        server = subprocess.Popen(
            command,
            cwd=repo,
            env={**env(), "MLFLOW_TRACKING_URI": tracking, "PIPELINE_PREDICTION_LOG": "off"},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    server.stderr = open(repo.parent / "serve.log", "rb")  # noqa: SIM115 - read by wait_for
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server, seconds=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        server.stderr.close()


def test_the_champion_and_the_rollout_router_serve_from_the_server(team):
    import mlflow

    uri, clones, *_ = team
    repo = clones["bob"]
    rows = rows_of(repo, 5)
    champion = client(uri).get_model_version_by_alias(NAME, "champion")
    mlflow.set_tracking_uri(uri)
    try:
        expected = mlflow.pyfunc.load_model(f"models:/{NAME}/{champion.version}").predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
    with served(f"models:/{NAME}@champion", repo, uri) as url:
        assert post(url, rows) == pytest.approx(list(expected), rel=1e-9)
    build = ["python", "-m", "mlpipeline", "rollout", "build", "--mode", "shadow"]
    run(build, repo, extra_env={"MLFLOW_TRACKING_URI": uri, "PIPELINE_PREDICTION_LOG": "off"})
    with served(f"models:/{NAME}-router@live", repo, uri) as url:
        answered = post(url, rows)
    assert [a["prediction"] if isinstance(a, dict) else a for a in answered] == pytest.approx(
        list(expected), rel=1e-9
    )


def test_a_server_stopped_mid_run_fails_the_stage_clearly_and_a_rerun_completes_once(
    pipeline, shared_folder, tmp_path_factory
):
    home, port = shared_folder / "fault", free_port()
    repo = clone_of(pipeline, tmp_path_factory.mktemp("fault"))
    set_params(repo, lambda p: p["train"]["search"].update(n_calls=4))  # train must run
    with team_stack(home, port=port) as uri:
        impatient = {**env(), **IMPATIENT, "MLFLOW_TRACKING_URI": uri}
        repro = subprocess.Popen(
            ["dvc", "repro"],
            cwd=repo,
            env=impatient,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_running_stage(uri, "train", repro)
    output, _ = repro.communicate(timeout=900)
    assert repro.returncode != 0, output
    assert f"MLflow tracking store {uri}" in output and "check that the server runs" in output
    assert "Traceback" not in output, output[-3000:]
    with team_stack(home, port=port) as again:
        assert again == uri
        run(["dvc", "repro"], repo, extra_env={**IMPATIENT, "MLFLOW_TRACKING_URI": uri})
        experiments = [e.experiment_id for e in client(uri).search_experiments()]
        finished = client(uri).search_runs(experiments, "attributes.status = 'FINISHED'")
        stages = sorted(r.data.tags["pipeline.stage"] for r in finished if is_stage(r))
        assert stages == ["package", "train"]  # each once: the rerun's
        train = next(r for r in finished if r.data.tags.get("pipeline.stage") == "train")
        assert train.data.metrics["trials"] == 4
        assert len(client(uri).search_model_versions(f"name='{NAME}'")) == 1
    assert not (repo / "mlflow.db").exists()


def is_stage(run_) -> bool:
    return run_.data.tags.get("pipeline.stage") in STAGES


def wait_for_running_stage(uri: str, stage: str, repro: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert repro.poll() is None, repro.communicate()[0][-3000:]
        found = client(uri).search_runs(
            [e.experiment_id for e in client(uri).search_experiments()],
            filter_string=f"tags.`pipeline.stage` = '{stage}' and attributes.status = 'RUNNING'",
        )
        if found:
            return
        time.sleep(1)
    raise AssertionError(f"no {stage} run started within 600 s")
