"""What MLflow's own views show after ``dvc repro``: each run's datasets (MLflow Datasets,
digests = the MD5s dvc.lock records), the registered version's LoggedModel with the test
metrics, the train run's plots as PNG, the experiment opening on its training runs, and
``registry lineage`` naming the model id and the datasets."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.integration.conftest import run


def _client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def _newest(client):
    """The newest version (alias challenger; the first is champion too)."""
    return client.get_model_version_by_alias("diamonds-price", "challenger")


def _stage_runs(client) -> dict:
    """stage -> run, of the pipeline execution that packaged the champion."""
    package = client.get_run(_newest(client).run_id)
    parent = package.data.tags["mlflow.parentRunId"]
    siblings = client.search_runs(
        [package.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    return {r.data.tags["pipeline.stage"]: r for r in siblings}


def _datasets(found) -> dict:
    """name -> (context, digest, source, rows, target) of a run's dataset inputs."""
    listed = {}
    for item in found.inputs.dataset_inputs:
        dataset, tags = item.dataset, {t.key: t.value for t in item.tags}
        profile = json.loads(dataset.profile)
        source = json.loads(dataset.source)["uri"]
        context = tags["mlflow.data.context"]
        listed[dataset.name] = (context, dataset.digest, source, profile["num_rows"])
        listed[dataset.name] += (profile.get("targets"),)
    return listed


def _file_md5(repo: Path, path: str) -> str:
    import hashlib

    return hashlib.md5((repo / path).read_bytes()).hexdigest()


def test_train_and_package_runs_list_their_datasets(pipeline):
    runs = _stage_runs(_client(pipeline))
    counts = json.loads((pipeline / "reports" / "featurize.json").read_text())
    ingest = json.loads((pipeline / "reports" / "ingest.json").read_text())
    train_md5 = _file_md5(pipeline, "data/features/train.parquet")
    test_md5 = _file_md5(pipeline, "data/features/test.parquet")
    raw_md5 = _file_md5(pipeline, "data/raw/data.parquet")
    train = ("training", train_md5, "data/features/train.parquet", counts["train_rows"], "price")
    test = ("testing", test_md5, "data/features/test.parquet", counts["test_rows"], "price")
    raw = ("raw", raw_md5, "data/raw/data.parquet", ingest["rows"], None)
    assert _datasets(runs["train"]) == {"train": train, "test": test}
    assert _datasets(runs["package"]) == {"raw": raw, "train": train, "test": test}
    assert _datasets(runs["featurize"]) == {"raw": raw, "train": train, "test": test}
    assert _datasets(runs["ingest"]) == {"raw": raw}
    assert _datasets(runs["validate"]) == {"raw": ("validation", *raw[1:])}
    lock = yaml.safe_load((pipeline / "dvc.lock").read_text())["stages"]["ingest"]["outs"]
    assert raw_md5 == next(o["md5"] for o in lock if o["path"] == "data/raw/data.parquet")


def test_the_registered_version_resolves_to_a_logged_model_with_the_test_metrics(pipeline):
    client = _client(pipeline)
    version = _newest(client)
    assert version.source.startswith("models:/m-")  # MLflow's SQL registry stores no model_id
    model_id = version.model_id or version.source.removeprefix("models:/")
    model = client.get_logged_model(model_id)
    test = json.loads((pipeline / "reports" / "metrics.json").read_text())["test"]
    metrics = {m.key: m.value for m in model.metrics}
    assert metrics == {f"test.{k}": v for k, v in test.items()}
    assert {m.dataset_name for m in model.metrics} == {"test"}
    assert {m.dataset_digest for m in model.metrics} == {
        _file_md5(pipeline, "data/features/test.parquet")
    }
    runs = _stage_runs(client)
    assert model.source_run_id == runs["package"].info.run_id == version.run_id
    assert model.tags["train.run_id"] == runs["train"].info.run_id
    assert "learning_rate" in model.params
    outputs = [m.model_id for m in runs["train"].outputs.model_outputs]
    assert outputs == [model_id]  # the train run lists the model it led to


def test_the_train_run_holds_each_plot_of_its_task_as_png(pipeline):
    client = _client(pipeline)
    runs = _stage_runs(client)
    for stage in ("train", "package"):
        listed = {a.path for a in client.list_artifacts(runs[stage].info.run_id, "plots")}
        pngs = {"plots/predictions.png", "plots/importance.png", "plots/search.png"}
        assert pngs <= listed, (stage, listed)
        assert not any(p.startswith(("plots/roc", "plots/confusion")) for p in listed)
    card = client.download_artifacts(runs["package"].info.run_id, "model_card.md")
    assert "![predictions](plots/predictions.png)" in Path(card).read_text()


def test_the_experiment_opens_on_its_training_runs(pipeline):
    experiment = _client(pipeline).get_experiment_by_name("dvc-pipeline")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.experiment_id == "1"  # the README's link: #/experiments/1/runs


def test_lineage_prints_the_model_id_and_the_datasets(pipeline):
    command = ["python", "-m", "mlpipeline", "registry", "lineage", "--alias", "challenger"]
    lineage = json.loads(run(command, pipeline).stdout)
    client = _client(pipeline)
    assert lineage["model_id"] == _newest(client).source.removeprefix("models:/")
    assert lineage["model_metrics"]["test.r2"] > 0.95
    names = {(d["name"], d["context"]) for d in lineage["datasets"]}
    assert names == {("raw", "raw"), ("train", "training"), ("test", "testing")}
    test = next(d for d in lineage["datasets"] if d["name"] == "test")
    assert test["digest"] == _file_md5(pipeline, "data/features/test.parquet")
    assert test["target"] == "price" and test["rows"] > 0
