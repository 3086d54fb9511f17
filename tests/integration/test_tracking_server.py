"""The pipeline against an MLflow tracking server (database backend, served artifacts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import BIN, STAGES, local_server, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a free localhost port: SQLite backend, artifacts served by it."""
    home = tmp_path_factory.mktemp("tracking-server")
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--backend-store-uri", f"sqlite:///{home / 'server.db'}", "--workers", "1"]
    command += ["--artifacts-destination", str(home / "artifacts"), "--serve-artifacts"]
    with local_server(command, "/health", home) as url:
        yield url, home


@pytest.fixture(scope="module")
def reproduced(pipeline, server, tmp_path_factory) -> Path:
    url, _ = server
    repo = tmp_path_factory.mktemp("server-client") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    (repo / "mlflow.db").unlink()
    shutil.rmtree(repo / "mlartifacts", ignore_errors=True)
    run(["dvc", "repro", "-f"], repo, extra_env={"MLFLOW_TRACKING_URI": url})
    return repo


def test_every_stage_trial_and_the_model_land_on_the_server(server, reproduced):
    import mlflow

    url, home = server
    client = mlflow.MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("dvc-pipeline")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    stages = {r.data.tags.get("pipeline.stage") for r in runs}
    assert set(STAGES) <= stages
    train = next(r for r in runs if r.data.tags.get("pipeline.stage") == "train")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train.info.run_id]
    assert len(trials) == 3 == train.data.metrics["trials"]
    champion = client.get_model_version_by_alias("diamonds-price", "champion")
    assert champion.tags["train.run_id"] == train.info.run_id
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        model = mlflow.pyfunc.load_model("models:/diamonds-price@champion")
    finally:
        mlflow.set_tracking_uri(before)
    assert model.unwrap_python_model().input_columns[0] == "carat"
    assert list((home / "artifacts").rglob("MLmodel"))  # artifacts stored by the server
    assert not (reproduced / "mlflow.db").exists()  # nothing went to the local default store
