"""The real pipeline, end to end: a copy of the repository, ``dvc repro`` with a tiny search
budget, then the model served over HTTP. Slow (a minute or two); no network needed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
STAGES = ["ingest", "validate", "featurize", "train", "package"]


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def _copy_repository(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _small_budget(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["search"].update(n_calls=3, n_initial_points=2, max_rounds=300)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _git_commit(repo: Path, message: str) -> None:
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
    _run(["git", "init", "-q"], repo) if not (repo / ".git").exists() else None
    _run(["git", "add", "-A"], repo)
    _run(["git", *ident, "commit", "-q", "-m", message], repo)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    repo = _copy_repository(tmp_path_factory.mktemp("repo"))
    (repo / "dvc.lock").unlink(missing_ok=True)
    _small_budget(repo)
    _git_commit(repo, "copy")
    _run(["dvc", "repro"], repo)
    return repo


def test_repro_writes_every_output(pipeline):
    for path in [
        "data/raw/data.parquet",
        "data/features/train.parquet",
        "data/features/spec.json",
        "models/lgbm/booster.txt",
        "models/pyfunc/MLmodel",
        "reports/metrics.json",
        "reports/validation.json",
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
    done = _run(["dvc", "repro"], pipeline)
    assert "Data and pipelines are up to date." in done.stdout
    assert "Running stage" not in done.stdout
    assert (pipeline / "dvc.lock").read_text() == lock


def test_mlflow_has_a_run_per_stage_under_one_parent(pipeline):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{pipeline / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dvc-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    stages = {
        r.data.tags.get("pipeline.stage"): r for r in runs if r.data.tags.get("pipeline.stage")
    }
    assert set(stages) == set(STAGES)
    parents = {r.data.tags["mlflow.parentRunId"] for r in stages.values()}
    assert len(parents) == 1
    for run in stages.values():
        assert run.info.status == "FINISHED"
        assert run.data.params, run.data.tags["pipeline.stage"]
        assert len(run.data.tags["git.commit"]) == 40
    assert stages["train"].data.metrics["test.r2"] > 0.95
    assert stages["validate"].data.metrics["critical_failures"] == 0
    assert stages["featurize"].data.tags["data.raw.md5"] == _lock_md5(
        pipeline, "data/raw/data.parquet"
    )
    artifacts = {a.path for a in client.list_artifacts(stages["validate"].info.run_id)}
    assert "validation.json" in artifacts


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
    np.testing.assert_allclose(model.predict(raw), expected, rtol=1e-5)


def test_misspelled_param_stops_the_experiment_naming_it(pipeline):
    # DVC itself refuses to override a key that does not exist ...
    done = _run(["dvc", "exp", "run", "-S", "train.serch.n_calls=8"], pipeline, check=False)
    assert done.returncode != 0
    assert "train.serch" in done.stderr
    # ... and a key forced in with '+' (or typed into params.yaml) stops the stage that reads it.
    done = _run(["dvc", "exp", "run", "-S", "+train.serch.n_calls=8"], pipeline, check=False)
    assert done.returncode != 0
    assert "unknown key 'serch' in section 'train'" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    _run(["git", "checkout", "--", "params.yaml"], pipeline)


def test_experiment_runs_and_shows_its_metrics(pipeline):
    _run(["dvc", "exp", "run", "-n", "two-calls", "-S", "train.search.n_calls=2"], pipeline)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], pipeline).stdout)
    exps = [e for base in shown for e in (base.get("experiments") or [])]
    names = {run["name"] for e in exps for run in e.get("revs", [])}
    assert "two-calls" in names


def test_push_and_pull_through_the_default_remote(pipeline):
    _run(["dvc", "push"], pipeline)
    before = (pipeline / "data/raw/data.parquet").read_bytes()
    shutil.rmtree(pipeline / ".dvc" / "cache")
    shutil.rmtree(pipeline / "data")
    _run(["dvc", "pull"], pipeline)
    assert (pipeline / "data/raw/data.parquet").read_bytes() == before
    assert "up to date" in _run(["dvc", "status"], pipeline).stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_model_server_answers_dataframe_split(pipeline):
    port = _free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models/pyfunc",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=pipeline,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server)
        body = json.dumps(
            {
                "dataframe_split": {
                    "columns": [
                        "carat",
                        "cut",
                        "color",
                        "clarity",
                        "depth",
                        "table",
                        "x",
                        "y",
                        "z",
                    ],
                    "data": [
                        [0.3, "Ideal", "E", "VS1", 61.5, 55, 4.3, 4.31, 2.65],
                        [1.5, "Premium", "G", "SI1", 62.0, 58, 7.3, 7.25, 4.5],
                    ],
                }
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 2
        assert 200 < predictions[0] < predictions[1] < 30000
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def _point_source_at(repo: Path, source: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"]["source"] = str(source)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_drifted_data_stops_before_featurize(pipeline, tmp_path):
    raw = pd.read_parquet(pipeline / "data/raw/data.parquet")
    raw.loc[raw.sample(frac=0.3, random_state=1).index, "cut"] = "Martian"
    raw.to_csv(tmp_path / "drifted.csv", index=False)
    _point_source_at(pipeline, tmp_path / "drifted.csv")
    try:
        done = _run(["dvc", "repro"], pipeline, check=False)
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert "validation failed" in output and "Martian" in output
        assert "expect_column_kl_divergence_to_be_less_than" in output
        assert "Running stage 'featurize'" not in output
        assert "Traceback" not in output
    finally:
        _run(["git", "checkout", "--", "params.yaml"], pipeline)


def test_broken_source_file_fails_with_one_line(pipeline, tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    _point_source_at(pipeline, tmp_path / "broken.parquet")
    try:
        done = _run(["dvc", "repro"], pipeline, check=False)
        assert done.returncode != 0
        assert f"error: ingest: cannot read {tmp_path / 'broken.parquet'} as parquet" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        _run(["git", "checkout", "--", "params.yaml"], pipeline)
