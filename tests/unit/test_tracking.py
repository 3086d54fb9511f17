from __future__ import annotations

import json

import pandas as pd
import pytest

from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import file_md5
from mlpipeline.track.runs import (
    EXECUTION_TAG,
    STAGE_TAG,
    artifact_location,
    stage_run,
    store_root,
    tracking_uri,
)


def _runs(uri):
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests")
    return client, client.search_runs([experiment.experiment_id])


def test_tracking_uri_defaults_to_sqlite_at_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_experiments_in_temporary_copies_log_to_the_workspace_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    assert store_root(copy) == tmp_path
    assert tracking_uri(copy) == f"sqlite:///{tmp_path}/mlflow.db"
    assert store_root(tmp_path / "src") == tmp_path / "src"


def test_a_project_run_is_the_parent_of_the_stage_runs(mlflow_store, monkeypatch):
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.create_experiment("project")
    project = client.create_run(experiment, run_name="mlflow run")
    monkeypatch.setenv("MLFLOW_RUN_ID", project.info.run_id)
    with stage_run("first", {}, inputs={}) as run:
        pass
    stage = client.get_run(run.run_id)
    assert stage.data.tags["mlflow.parentRunId"] == project.info.run_id
    assert stage.info.experiment_id == experiment and stage.info.status == "FINISHED"
    assert client.get_run(project.info.run_id).info.status == "RUNNING"  # mlflow run's to end


def test_artifacts_live_beside_a_sqlite_store(tmp_path):
    assert artifact_location(f"sqlite:///{tmp_path}/x.db") == (tmp_path / "mlartifacts").as_uri()
    assert artifact_location("http://127.0.0.1:5000") is None


@pytest.mark.parametrize("in_process", [False, True], ids=["helper process", "in process"])
def test_stage_runs_share_a_parent_and_carry_lineage(
    tmp_path, mlflow_store, monkeypatch, in_process
):
    data = tmp_path / "in.txt"
    data.write_text("hello")
    table = tmp_path / "train.parquet"
    pd.DataFrame({"kind": pd.Categorical(["a", "b", "a"]), "y": [1.0, 2.0, 3.0]}).to_parquet(table)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-one")
    with stage_run("first", {"a": {"b": 1}}, inputs={"raw": data}, in_process=in_process) as run:
        run.log_dataset("train", table, "training", "y")
        run.log_metrics({"m": {"n": 2.5}, "label": "not a number"})
        run.log_series({"trial.score": [3.0, 1.0]})
        run.log_child(
            {"name": "trial 0", "params": {"lr": 0.1}, "metrics": {"cv_score": 0.5}, "tags": {}}
        )
    with stage_run("second", {"c": 2}, inputs={}):
        pass

    client, runs = _runs(mlflow_store)
    trial = next(r for r in runs if r.info.run_name == "trial 0")
    runs = [r for r in runs if r is not trial]
    by_stage = {r.data.tags.get(STAGE_TAG): r for r in runs}
    parent = by_stage.pop(None)
    assert parent.data.tags["pipeline.role"] == "pipeline"
    assert parent.info.status == "FINISHED"
    first, second = by_stage["first"], by_stage["second"]
    for child in (first, second):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags[EXECUTION_TAG] == parent.data.tags[EXECUTION_TAG]
        assert child.data.tags["dvc.exp_name"] == "exp-one"
        assert child.data.tags["git.commit"]
    assert first.data.tags["data.raw.md5"] == file_md5(data)
    assert first.data.params == {"a.b": "1"}
    assert first.data.metrics == {"m.n": 2.5, "trial.score": 1.0}
    assert trial.data.tags["mlflow.parentRunId"] == first.info.run_id
    assert (trial.data.params, trial.data.metrics) == ({"lr": "0.1"}, {"cv_score": 0.5})
    assert trial.info.status == "FINISHED"
    history = client.get_metric_history(first.info.run_id, "trial.score")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 1.0)]
    (listed,) = client.get_run(first.info.run_id).inputs.dataset_inputs
    assert (listed.dataset.name, listed.dataset.digest) == ("train", file_md5(table))
    assert json.loads(listed.dataset.source) == {"uri": str(table)}
    assert json.loads(listed.dataset.profile) == {"num_rows": 3, "num_elements": 6, "targets": "y"}
    assert [(t.key, t.value) for t in listed.tags] == [("mlflow.data.context", "training")]


def test_a_failing_stage_marks_its_run_failed(mlflow_store):
    with pytest.raises(RuntimeError), stage_run("boom", {}, inputs={}):
        raise RuntimeError("bad")
    _, runs = _runs(mlflow_store)
    assert {r.info.status for r in runs} == {"FAILED"}


def test_with_tracking_off_a_stage_logs_nothing(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    with stage_run("quiet", {"a": 1}, inputs={}) as run:
        run.log_metrics({"rmse": 1.0})
        run.log_child({"name": "trial-0", "params": {"b": 2}, "metrics": {"score": 0.5}})
        run.log_artifact(tmp_path)
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_a_stage_whose_tracking_fails_fails_too(tmp_path, monkeypatch):
    # the helper process cannot open the store: the error surfaces when the stage ends
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    ran = []
    with pytest.raises(Exception, match="a-file"), stage_run("lost", {"a": 1}, inputs={}) as run:
        run.log_metrics({"rmse": 1.0})
        ran.append(True)
    assert ran == [True]  # the stage's own work was not held up


def test_the_stages_own_error_wins_over_a_tracking_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    with pytest.raises(RuntimeError, match="bad data"), stage_run("lost", {}, inputs={}):
        raise RuntimeError("bad data")


def test_a_stage_whose_tracking_process_dies_fails_with_the_reason(mlflow_store):
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool), stage_run("killed", {}, inputs={}) as run:
        for pid in list(run._executor._processes):  # the helper, killed as the OOM killer would
            os.kill(pid, signal.SIGKILL)


def test_the_tracking_helper_runs_at_a_lower_cpu_priority_than_the_stage(mlflow_store):
    import os

    from mlpipeline.track.runs import HELPER_NICENESS

    with stage_run("polite", {}, inputs={}) as run:
        helper = run._executor.submit(os.nice, 0).result()  # os.nice(0) reads the niceness
    assert helper == min(19, os.nice(0) + HELPER_NICENESS)


def test_a_call_the_store_refuses_in_the_stage_ends_in_a_message_naming_the_store(mlflow_store):
    """E.g. PostgreSQL refusing a value longer than its column: a message, not a traceback."""
    from mlflow.exceptions import MlflowException

    refused = MlflowException("value too long for type character varying(5000)")
    expected = r"(?s)tracking store sqlite:.*varying\(5000\)"
    with pytest.raises(PipelineError, match=expected), stage_run("x", {}, inputs={}):
        raise refused
