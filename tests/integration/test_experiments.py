"""Queued experiments with two workers, and `mlflow run`, all logging to the workspace's store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import (
    _copy_repository,
    git_commit,
    run,
    set_params,
    start_queue,
    wait_for_queue,
)

pytestmark = pytest.mark.integration

# One LightGBM thread and one search process per experiment: two experiments at once then
# use the two cores without oversubscribing them.
LIGHT = ["-S", "runtime.num_threads=1", "-S", "runtime.search_jobs=1"]
PROJECT_RUN = ["mlflow", "run", ".", "--env-manager", "local", "--experiment-name", "dvc-pipeline"]
PROJECT_RUN += ["-P", "n_calls=2", "-P", "n_jobs=1", "-P", "name=from-mlflow"]


@pytest.fixture(scope="module")
def workspace(pipeline, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("experiments") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)
    return repo


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """The repository as a new user clones it: no tracking store, no DVC cache, no outputs."""
    repo = _copy_repository(tmp_path_factory.mktemp("fresh") / "repo")

    def small(p: dict) -> None:
        p["train"]["search"].update(n_initial_points=2, max_rounds=200)

    set_params(repo, small)
    git_commit(repo, "fresh clone")
    assert not (repo / "mlflow.db").exists()
    return repo


def store(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def runs_of(repo: Path, exp_name: str) -> dict[str, object]:
    client = store(repo)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`dvc.exp_name` = '{exp_name}'")
    return {r.data.tags.get("pipeline.stage", r.info.run_name): r for r in found}


def test_queued_experiments_on_a_fresh_clone_with_two_workers_land_in_one_store(fresh_clone):
    """Both start at once against a store that does not exist yet; neither loses a run."""
    workspace = fresh_clone
    for name, calls in (("queued-a", 2), ("queued-b", 3)):
        run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "-n",
                name,
                "-S",
                f"train.search.n_calls={calls}",
                *LIGHT,
            ],
            workspace,
        )
    start_queue(workspace)
    status = wait_for_queue(workspace)
    assert "Failed" not in status, status
    shown = json.loads(run(["dvc", "exp", "show", "--json"], workspace).stdout)
    revs = {
        rev["name"]: rev
        for base in shown
        for exp in base.get("experiments") or []
        for rev in exp.get("revs", [])
    }
    for name, calls in (("queued-a", 2), ("queued-b", 3)):
        assert name in revs, list(revs)
        stages = runs_of(workspace, name)
        assert {"train", "package"} <= set(stages), sorted(stages)
        assert all(r.info.status == "FINISHED" for r in stages.values())
        assert stages["train"].data.metrics["trials"] == calls
        trials = store(workspace).search_runs(
            [stages["train"].info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{stages['train'].info.run_id}'",
        )
        assert len(trials) == calls
    strays = [
        p for p in (workspace / ".dvc" / "tmp").rglob("*") if p.name in ("mlflow.db", "mlartifacts")
    ]
    assert strays == []


def test_mlflow_run_runs_the_pipeline_as_an_experiment(workspace):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    run(
        [
            "mlflow",
            "run",
            ".",
            "--env-manager",
            "local",
            "-P",
            "n_calls=2",
            "-P",
            "name=from-mlflow",
            "-P",
            "n_jobs=1",
            "--experiment-name",
            "dvc-pipeline",
        ],
        workspace,
        extra_env={"MLFLOW_TRACKING_URI": uri},
    )
    stages = runs_of(workspace, "from-mlflow")
    assert {"train", "package"} <= set(stages), sorted(stages)
    parents = {r.data.tags.get("mlflow.parentRunId") for r in stages.values()}
    assert len(parents) == 1
    project = store(workspace).get_run(parents.pop())
    assert project.data.tags.get("mlflow.project.entryPoint") == "main"
    assert project.info.status == "FINISHED"
    assert project.data.params.get("n_calls") == "2"
