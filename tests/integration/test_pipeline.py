"""The real pipeline, end to end: a copy of the repository, ``dvc repro`` with a tiny search
budget, then the model served over HTTP. Slow (a minute or two); no network needed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.conftest import BIN, STAGES, restore, run

pytestmark = pytest.mark.integration


def test_repro_writes_every_output(pipeline):
    for path in [
        "data/raw/data.parquet",
        "data/features/train.parquet",
        "data/features/spec.json",
        "models/lgbm/booster.txt",
        "models/pyfunc/MLmodel",
        "reports/metrics.json",
        "reports/validation/raw.json",
        "reports/validation/features.html",
        "reports/plots/search.csv",
        "dvc.lock",
    ]:
        assert (pipeline / path).exists(), path
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert metrics["trials"] == 3
    assert metrics["test"]["r2"] > 0.95
    ingest = json.loads((pipeline / "reports/ingest.json").read_text())
    assert ingest["rows"] == 53940


def test_second_repro_changes_nothing(pipeline):
    lock = (pipeline / "dvc.lock").read_text()
    done = run(["dvc", "repro"], pipeline)
    assert "Data and pipelines are up to date." in done.stdout
    assert "Running stage" not in done.stdout
    assert (pipeline / "dvc.lock").read_text() == lock


@pytest.mark.parametrize(
    ("module", "stale"),
    [
        ("mlpipeline/commands/analyze.py", []),
        ("mlpipeline/serve/rollout_report.py", []),
        ("mlpipeline/quality/monitoring.py", []),
        ("mlpipeline/model/search.py", ["package", "train"]),
        ("mlpipeline/data/io.py", sorted(STAGES)),
    ],
)
def test_a_code_edit_makes_only_the_stages_that_import_it_stale(pipeline, module, stale):
    path = pipeline / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"# a comment line\n")
        status = json.loads(run(["dvc", "status", "--json"], pipeline).stdout or "{}")
    finally:
        path.write_bytes(original)
    assert sorted(status) == stale


def test_mlflow_has_a_run_per_stage_under_one_parent(pipeline):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{pipeline / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dvc-pipeline")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    first_parent = next(r for r in runs if r.data.tags.get("pipeline.role") == "pipeline")
    assert first_parent.info.status == "FINISHED"
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == first_parent.info.run_id
    ]
    stages = {r.data.tags["pipeline.stage"]: r for r in children}
    assert sorted(stages) == sorted(STAGES) and len(children) == len(STAGES)
    for stage_run in stages.values():
        assert stage_run.info.status == "FINISHED"
        assert stage_run.data.params, stage_run.data.tags["pipeline.stage"]
        assert len(stage_run.data.tags["git.commit"]) == 40
    assert stages["train"].data.metrics["test.r2"] > 0.95
    assert stages["validate"].data.metrics["critical_failures"] == 0
    assert stages["featurize"].data.tags["data.raw.md5"] == _lock_md5(
        pipeline, "data/raw/data.parquet"
    )
    artifacts = {a.path for a in client.list_artifacts(stages["validate"].info.run_id)}
    assert {"raw.json", "raw.html"} <= artifacts
    train_id = stages["train"].info.run_id
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train_id]
    assert sorted(int(t.data.tags["trial.number"]) for t in trials) == [0, 1, 2]
    assert all("cv_score" in t.data.metrics and t.data.params for t in trials)
    history = pd.read_csv(pipeline / "reports/plots/search.csv")
    assert len(history) == 3 and history["best_score"].is_monotonic_decreasing


def _lock_md5(repo: Path, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["ingest"]["outs"] if o["path"] == path)


def test_packaged_model_predicts_raw_rows_sensibly(pipeline):
    import mlflow

    model = mlflow.pyfunc.load_model(str(pipeline / "models/pyfunc"))
    raw = pd.read_parquet(pipeline / "data/raw/data.parquet").sample(300, random_state=0)
    rows = raw.drop(columns=["price"]).astype({c: object for c in ("cut", "color", "clarity")})
    base = model.predict(rows)
    assert (base > 0).all()
    heavier = rows.assign(carat=rows["carat"] * 1.3)
    assert (model.predict(heavier) >= base).mean() > 0.8  # directional: more carat, not cheaper


def test_served_predictions_equal_the_evaluated_ones(pipeline):
    """The packaged model, fed raw rows, reproduces train's test-set predictions."""
    import mlflow

    model = mlflow.pyfunc.load_model(str(pipeline / "models/pyfunc"))
    spec = json.loads((pipeline / "data/features/spec.json").read_text())
    test = pd.read_parquet(pipeline / "data/features/test.parquet", columns=spec["inputs"])
    raw = test.astype({c: object for c in spec["categories"]})
    expected = pd.read_csv(pipeline / "reports/plots/predictions.csv")["predicted"]
    chunk = 5000  # package.max_batch_rows in the test pipeline
    predicted = [model.predict(raw.iloc[i : i + chunk]) for i in range(0, len(raw), chunk)]
    np.testing.assert_allclose(np.concatenate(predicted), expected, rtol=1e-5)


def test_misspelled_param_stops_the_experiment_naming_it(pipeline):
    # DVC itself refuses to override a key that does not exist ...
    done = run(["dvc", "exp", "run", "-S", "train.serch.n_calls=8"], pipeline, check=False)
    assert done.returncode != 0
    assert "train.serch" in done.stderr
    # ... and a key forced in with '+' (or typed into params.yaml) stops the stage that reads it.
    done = run(["dvc", "exp", "run", "-S", "+train.serch.n_calls=8"], pipeline, check=False)
    assert done.returncode != 0
    assert "unknown key 'serch' in section 'train'" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    restore(pipeline)


def test_experiment_runs_and_shows_its_metrics(pipeline):
    run(["dvc", "exp", "run", "-n", "two-calls", "-S", "train.search.n_calls=2"], pipeline)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], pipeline).stdout)
    exps = [e for base in shown for e in (base.get("experiments") or [])]
    names = {rev["name"] for e in exps for rev in e.get("revs", [])}
    assert "two-calls" in names
    restore(pipeline)


def test_push_and_pull_through_the_default_remote(pipeline):
    run(["dvc", "push"], pipeline)
    before = (pipeline / "data/raw/data.parquet").read_bytes()
    shutil.rmtree(pipeline / ".dvc" / "cache")
    shutil.rmtree(pipeline / "data")
    run(["dvc", "pull"], pipeline)
    assert (pipeline / "data/raw/data.parquet").read_bytes() == before
    assert "up to date" in run(["dvc", "status"], pipeline).stdout


@pytest.mark.parametrize("suite", ["raw", "features"])
def test_rebuilding_the_suites_reproduces_the_committed_files(pipeline, suite, tmp_path):
    sources = {
        "raw": ["--reference", "data/raw/data.parquet"],
        "features": ["--featurize", "--reference", "data/raw/data.parquet"],
    }[suite]
    out = tmp_path / f"{suite}.json"
    run(
        [str(BIN / "python"), "-m", "mlpipeline", "build-suite", *sources, "--out", str(out)],
        pipeline,
    )
    assert out.read_bytes() == (pipeline / "expectations" / f"{suite}.json").read_bytes()


def _monitor(pipeline: Path, batch: Path) -> subprocess.CompletedProcess:
    command = [str(BIN / "python"), "-m", "mlpipeline", "monitor", str(batch)]
    return run(command, pipeline, check=False)


@pytest.fixture(scope="module")
def sample(pipeline) -> pd.DataFrame:
    return pd.read_parquet(pipeline / "data/raw/data.parquet").sample(2000, random_state=0)


def test_monitor_passes_a_random_sample(pipeline, sample, tmp_path):
    sample.to_csv(tmp_path / "batch.csv", index=False)
    done = _monitor(pipeline, tmp_path / "batch.csv")
    assert done.returncode == 0, done.stderr
    report = json.loads((pipeline / "reports/monitor/batch.json").read_text())
    assert report["verdict"] == "no drift"
    assert (pipeline / "reports/monitor/batch.html").exists()


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda f: f.assign(carat=f["carat"] * 1.3), "carat"),
        (lambda f: f.assign(cut=np.where(np.arange(len(f)) % 2 == 0, "Fair", f["cut"])), "cut"),
    ],
)
def test_monitor_names_drifted_columns(pipeline, sample, tmp_path, change, column):
    change(sample).to_parquet(tmp_path / "drifted.parquet")
    done = _monitor(pipeline, tmp_path / "drifted.parquet")
    assert done.returncode == 1, done.stderr
    report = json.loads((pipeline / "reports/monitor/drifted.json").read_text())
    assert column in report["named"]
    assert "drift: " in done.stderr and column in done.stderr
    untouched = {"color", "clarity", "depth", "table"}
    assert not untouched & set(report["named"])


def test_monitor_calls_a_batch_without_a_column_invalid(pipeline, sample, tmp_path):
    sample.drop(columns=["depth"]).to_csv(tmp_path / "short.csv", index=False)
    done = _monitor(pipeline, tmp_path / "short.csv")
    assert done.returncode == 2
    assert "invalid data: missing: depth" in done.stderr
    assert "Traceback" not in done.stderr
