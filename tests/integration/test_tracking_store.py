"""One tracking store, safe from the first process on: stages started at the same instant
against a SQLite store that does not exist yet all log their runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, make_params, regression_table, write_params
from tests.integration.conftest import env

pytestmark = pytest.mark.integration

STAGES = 8


def test_eight_stages_starting_at_once_on_a_new_store_all_log(tmp_path: Path):
    table = tmp_path / "table.csv"
    regression_table().to_csv(table, index=False)
    params = write_params(tmp_path / "params.yaml", make_params(str(table), "y", ["a", "kind"]))
    database = tmp_path / "store" / "mlflow.db"  # neither the file nor its folder exists yet
    uri = f"sqlite:///{database}"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stages.ingest",
                "--params",
                str(params),
                "--out",
                str(tmp_path / f"raw{n}.parquet"),
                "--meta",
                str(tmp_path / f"meta{n}.json"),
            ],
            cwd=REPO,
            env={**env(), "MLFLOW_TRACKING_URI": uri, "PIPELINE_EXECUTION_ID": f"exec-{n}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(STAGES)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    failed = [err for code, err in results if code != 0]
    assert not failed, failed[0]
    assert not any("Traceback" in err for _, err in results)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("dvc-pipeline")
    runs = client.search_runs([experiment.experiment_id], "tags.`pipeline.stage` = 'ingest'")
    assert len(runs) == STAGES
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.metrics["rows"] for r in runs} == {200}


def test_a_broken_store_stops_the_stage_with_its_uri_and_the_fix(tmp_path: Path):
    table = tmp_path / "table.csv"
    regression_table().to_csv(table, index=False)
    params = write_params(tmp_path / "params.yaml", make_params(str(table), "y", ["a", "kind"]))
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"this is not a SQLite database" * 100)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.ingest",
            "--params",
            str(params),
            "--out",
            str(tmp_path / "raw.parquet"),
            "--meta",
            str(tmp_path / "meta.json"),
        ],
        cwd=REPO,
        env={**env(), "MLFLOW_TRACKING_URI": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"MLflow tracking store sqlite:///{database}" in done.stderr
    assert "move it aside" in done.stderr and "PIPELINE_TRACKING=off" in done.stderr
