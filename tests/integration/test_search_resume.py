"""The train stage killed with SIGKILL part-way through its search, then run again: finished
trials are replayed from the checkpoint, not retrained, and the model is byte-for-byte the one
an uninterrupted run gives — whether the trials ran in one process or two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import BIN, env

pytestmark = pytest.mark.integration


def _params(pipeline: Path, folder: Path, n_jobs: int) -> Path:
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["train"]["search"].update(n_calls=6, n_initial_points=2, batch_size=2, max_rounds=150)
    params["runtime"]["search_jobs"] = n_jobs
    path = folder / f"params_{n_jobs}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _train(pipeline: Path, out: Path, params: Path, checkpoints: Path) -> list[str]:
    return [
        str(BIN / "python"), "-m", "stages.train", "--params", str(params),
        "--features", "data/features", "--model-dir", str(out / "model"),
        "--metrics", str(out / "metrics.json"), "--slices", str(out / "slices.json"),
        "--plots-dir", str(out / "plots"),
        "--checkpoint-dir", str(checkpoints),
    ]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    return {**env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _finished_trials(checkpoints: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in checkpoints.glob("*.jsonl"))


def test_killed_search_resumes_without_retraining(pipeline, tmp_path):
    whole, resumed, checkpoints = tmp_path / "whole", tmp_path / "resumed", tmp_path / "ck"
    cmd = _train(pipeline, whole, _params(pipeline, tmp_path, 2), tmp_path / "ck_whole")
    subprocess.run(cmd, cwd=pipeline, env=_env(tmp_path), check=True, capture_output=True)

    cmd = _train(pipeline, resumed, _params(pipeline, tmp_path, 1), checkpoints)
    victim = subprocess.Popen(
        cmd, cwd=pipeline, env=_env(tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _finished_trials(checkpoints) < 3 and victim.poll() is None:
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    finished_before_kill = _finished_trials(checkpoints)
    assert 3 <= finished_before_kill < 6

    done = subprocess.run(cmd, cwd=pipeline, env=_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming: " in done.stderr
    assert not list(checkpoints.glob("*.jsonl")), "the checkpoint is removed after success"
    for name in ("model/booster.txt", "model/summary.json", "metrics.json", "plots/search.csv"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`pipeline.stage` = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    latest = runs[0]
    assert latest.data.metrics["trials_reused"] == finished_before_kill
    trials = client.search_runs(
        [latest.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{latest.info.run_id}'",
    )
    assert len(trials) == 6
    reused = sorted(t.data.tags["trial.reused"] for t in trials)
    assert reused.count("true") == finished_before_kill
    assert json.loads((resumed / "metrics.json").read_text())["trials"] == 6
