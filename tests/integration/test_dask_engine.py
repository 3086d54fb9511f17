"""``engine: dask``: the same pipeline, partition by partition on a LocalCluster, against the
pandas run of the session's ``pipeline`` fixture (same params otherwise).

Tolerance (docs/scale.md): the data, the validation verdicts, the cleaning
counts and the train/test rows are identical; metrics differ only because the rows reach
LightGBM in another order (other CV folds) and the refit is distributed — test and CV RMSE,
MAE and MAPE within 3% (relative), R^2 within 0.003.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import _copy_repository, git_commit, run, set_params

RELATIVE = ("rmse", "mae", "mape")


@pytest.fixture(scope="module")
def dask_pipeline(pipeline: Path, tmp_path_factory) -> Path:
    """The pipeline fixture's repository and params, with engine: dask and small partitions."""
    repo = _copy_repository(tmp_path_factory.mktemp("dask"))
    for name in ("params.yaml", "dvc.lock"):
        (repo / name).write_bytes((pipeline / name).read_bytes())
    (repo / "dvc.lock").unlink()

    def use_dask(p: dict) -> None:
        p["engine"] = "dask"
        p["runtime"]["dask"]["blocksize"] = "1MiB"  # the default table in several partitions

    set_params(repo, use_dask)
    git_commit(repo, "engine: dask")
    run(["dvc", "repro"], repo)
    return repo


def _json(repo: Path, name: str) -> dict:
    return json.loads((repo / name).read_text())


def test_data_is_partitioned_and_identical(pipeline, dask_pipeline):
    parts = sorted((dask_pipeline / "data/raw/data.parquet").glob("*.parquet"))
    assert len(parts) >= 2
    ingest = _json(dask_pipeline, "reports/ingest.json")
    assert ingest == _json(pipeline, "reports/ingest.json")  # rows, schema, content hash


def test_validation_verdicts_match(pipeline, dask_pipeline):
    for name in ("raw", "features"):
        ours = _json(dask_pipeline, f"reports/validation/{name}.json")
        theirs = _json(pipeline, f"reports/validation/{name}.json")
        assert ours["statistics"] == theirs["statistics"]
        verdicts = [
            {
                (r["expectation"], json.dumps(r["kwargs"], sort_keys=True), r["success"])
                for r in report["results"]
            }
            for report in (ours, theirs)
        ]
        assert verdicts[0] == verdicts[1]


def test_cleaning_and_split_match(pipeline, dask_pipeline):
    assert _json(dask_pipeline, "reports/featurize.json") == _json(
        pipeline, "reports/featurize.json"
    )
    for part in ("train", "test"):
        ours = pd.read_parquet(dask_pipeline / f"data/features/{part}.parquet")
        theirs = pd.read_parquet(pipeline / f"data/features/{part}.parquet")
        key = list(theirs.columns)
        ours = ours.sort_values(key, ignore_index=True)
        theirs = theirs.sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(ours, theirs, check_categorical=False)


def test_metrics_within_tolerance(pipeline, dask_pipeline):
    ours, theirs = (
        _json(dask_pipeline, "reports/metrics.json"),
        _json(pipeline, "reports/metrics.json"),
    )
    for part in ("cv", "test"):
        for metric in RELATIVE:
            assert ours[part][metric] == pytest.approx(theirs[part][metric], rel=0.03), (
                part,
                metric,
            )
        assert ours[part]["r2"] == pytest.approx(theirs[part]["r2"], abs=0.003), part


def test_the_packaged_model_is_the_same_pyfunc(pipeline, dask_pipeline):
    raw = pd.read_parquet(pipeline / "data/raw/data.parquet").drop(columns="price").head(200)
    ours, theirs = (
        mlflow.pyfunc.load_model(str(repo / "models/pyfunc")).predict(raw)
        for repo in (dask_pipeline, pipeline)
    )
    assert type(ours) is type(theirs) and np.shape(ours) == np.shape(theirs) == (200,)
    assert np.median(np.abs(np.asarray(ours) / np.asarray(theirs) - 1)) < 0.05


def test_stages_record_the_engine(dask_pipeline):
    client = mlflow.MlflowClient(f"sqlite:///{dask_pipeline / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dvc-pipeline")
    runs = client.search_runs([experiment.experiment_id], "tags.engine = 'dask'")
    assert {"ingest", "train"} <= {r.info.run_name for r in runs}
