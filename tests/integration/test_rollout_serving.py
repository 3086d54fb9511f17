"""Rolling a challenger out on a real registry and the real MLflow model server: shadow and
canary serving of the router, the prediction log surviving a SIGKILL, and the rollout report
acted on by ``registry rollback --from-report``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest

from mlpipeline.serve.live import LOG_ENV, log_files, read_log
from tests.integration.conftest import BIN, env, free_port, run, set_params, wait_for

pytestmark = pytest.mark.integration

NAME, ROUTER = "diamonds-price", "diamonds-price-router"


V: dict[str, str] = {}  # the champion's and the challenger's version numbers


@pytest.fixture(scope="module")
def rollout_repo(pipeline, tmp_path_factory) -> Path:
    """A copy of the pipeline repository with the pipeline's champion and a weaker new version
    (15 boosting rounds: the gate keeps the champion, the new version is the challenger). Other
    tests may have registered versions in the pipeline's store: the numbers go to ``V``."""
    import shutil

    repo = tmp_path_factory.mktemp("rollout") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)

    def weaker(p: dict) -> None:
        p["train"]["search"]["max_rounds"] = 15
        p["rollout"] = {"mode": "shadow", "rotate_bytes": 4096}
        p["rollout"]["report"] = {"min_rows": 100, "min_outcomes": 100}

    champion = aliases(repo)["champion"]
    set_params(repo, weaker)
    run(["dvc", "repro"], repo)
    newest = max(int(v.version) for v in client(repo).search_model_versions(f"name='{NAME}'"))
    assert aliases(repo) == {"champion": champion, "challenger": str(newest)}
    V.update(champion=champion, challenger=str(newest))
    return repo


def store(repo: Path) -> str:
    return f"sqlite:///{repo / 'mlflow.db'}"


def aliases(repo: Path) -> dict[str, str]:
    return {k: str(v) for k, v in client(repo).get_registered_model(NAME).aliases.items()}


def client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=store(repo))


def version_model(repo: Path, version: str):
    """A registered version of the model, loaded in this process."""
    import mlflow

    uri = client(repo).get_model_version_download_uri(NAME, version)
    path = mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=store(repo))
    return mlflow.pyfunc.load_model(path)


def held_out(repo: Path, count: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """``count`` raw test rows as a client sends them (no target), and their prices."""
    rows = pd.read_parquet(repo / "data" / "features" / "test_rows.parquet")
    rows = rows.sample(count, random_state=seed).reset_index(drop=True)
    rows = rows.astype({c: object for c in rows.select_dtypes("category")})
    return rows.drop(columns=["price"]), rows["price"]


def post(url: str, rows: pd.DataFrame) -> list:
    split = json.loads(rows.to_json(orient="split", index=False))
    body = json.dumps({"dataframe_split": split}).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


@contextmanager
def router_server(repo: Path, log_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow models serve`` of the router's ``live`` version, logging to ``log_dir``;
    stopped with SIGTERM (the log flushed) unless the test killed it."""
    port = free_port()
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{ROUTER}@live"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    extra = {"MLFLOW_TRACKING_URI": store(repo), LOG_ENV: str(log_dir)}
    with open(log_dir.parent / f"{log_dir.name}.server.log", "wb") as errors:
        server = subprocess.Popen(
            command,
            cwd=repo,
            env={**env(), **extra},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # one process group: the CLI and the uvicorn it starts
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{url}/ping", server)
            yield url, server
        finally:
            stop(server, signal.SIGTERM)


def stop(server: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the server's process group and wait until every process of it ended."""
    try:
        group = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        os.killpg(server.pid, sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    server.wait(timeout=60)
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in group) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def build(repo: Path, *args: str) -> str:
    return run(["python", "-m", "mlpipeline", "rollout", "build", *args], repo).stderr


def close(a: list[float], b: list[float]) -> bool:
    return a == pytest.approx(b, rel=1e-9)


def test_shadow_answers_with_the_champion_and_logs_both_versions(rollout_repo, tmp_path):
    said = build(rollout_repo, "--mode", "shadow")
    c, k = V["champion"], V["challenger"]
    assert f"{ROUTER} v1 (@live): mode shadow; champion v{c}, challenger v{k}" in said
    rows, _ = held_out(rollout_repo, 30)
    rows.insert(0, "request_id", [f"shadow-{i}" for i in range(30)])
    log_dir = tmp_path / "log"
    with router_server(rollout_repo, log_dir) as (url, _):
        answers = [a for start in (0, 10, 20) for a in post(url, rows.iloc[start : start + 10])]
    inputs = rows.drop(columns=["request_id"])
    champion = version_model(rollout_repo, c).predict(inputs).tolist()
    challenger = version_model(rollout_repo, k).predict(inputs).tolist()
    assert close(answers, champion) and not close(answers, challenger)
    records = {r["request_id"]: r for r in read_log(log_dir).records}
    assert sorted(records) == sorted(rows["request_id"])
    for i, key in enumerate(rows["request_id"]):
        found = records[key]
        assert (found["mode"], found["answered_by"]) == ("shadow", c)
        assert close([found["outputs"][c]], [answers[i]])
        assert close([found["outputs"][k]], [challenger[i]])


def test_canary_answers_thirty_percent_of_keys_with_the_challenger_and_a_key_keeps_its_model(
    rollout_repo, tmp_path
):
    build(rollout_repo, "--mode", "canary", "--share", "0.3")
    rows, _ = held_out(rollout_repo, 1000, seed=1)
    keys = [f"customer-{i}" for i in range(1000)]
    models = {v: version_model(rollout_repo, v) for v in (V["champion"], V["challenger"])}

    def answered_by(frame: pd.DataFrame, answers: list[float]) -> list[str]:
        expected = {v: model.predict(frame).tolist() for v, model in models.items()}
        found = []
        for i, answer in enumerate(answers):
            (version,) = [v for v in expected if close([answer], [expected[v][i]])]
            found.append(version)
        return found

    shuffled = rows.sample(frac=1, random_state=2).reset_index(drop=True)  # other rows, same keys
    with router_server(rollout_repo, tmp_path / "log") as (url, _):
        first, again = [], []
        for start in range(0, 1000, 100):
            part = slice(start, start + 100)
            first += post(url, rows.iloc[part].assign(request_id=keys[part]))
            again += post(url, shuffled.iloc[part].assign(request_id=keys[part]))
    versions = answered_by(rows, first)
    share = versions.count(V["challenger"]) / 1000
    assert abs(share - 0.3) <= 0.05, share
    assert answered_by(shuffled, again) == versions  # each key: the same version both times
    logged = {}
    for record in read_log(tmp_path / "log").records:
        logged.setdefault(record["request_id"], set()).add(record["answered_by"])
    assert [logged[k] for k in keys] == [{v} for v in versions]


BURST = {}  # what the SIGKILL test leaves for the report tests: the log folder and outcomes


def test_a_sigkill_during_a_burst_leaves_the_earlier_log_files_whole(rollout_repo, tmp_path):
    build(rollout_repo, "--mode", "shadow")
    rows, prices = held_out(rollout_repo, 2000, seed=3)
    rows.insert(0, "request_id", [f"burst-{i}" for i in range(len(rows))])
    log_dir, answered, failed = tmp_path / "log", [], []

    def burst(url: str) -> None:
        for i in range(len(rows)):
            try:
                post(url, rows.iloc[i : i + 1])
                answered.append(i)
            except OSError as exc:  # the server is gone
                failed.append(exc)
                return

    with router_server(rollout_repo, log_dir) as (url, server):
        sender = threading.Thread(target=burst, args=(url,))
        sender.start()
        while len(answered) < 300 and sender.is_alive():
            time.sleep(0.01)
        stop(server, signal.SIGKILL)  # mid-burst: requests are on the way
        sender.join(60)
    assert failed and len(answered) >= 300
    files = log_files(log_dir)
    assert len(files) > 5  # rotated every 4 KiB
    for path in files[:-1]:  # closed files: whole lines, every one a record
        data = path.read_bytes()
        assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())
    found = read_log(log_dir)
    assert found.corrupt == [] and set(found.partial) <= {files[-1].name}
    ids = {r["request_id"] for r in found.records}
    lost = [i for i in answered if f"burst-{i}" not in ids]
    assert len(lost) <= 20, lost  # at most what was queued when the server died
    outcomes = pd.DataFrame({"request_id": rows["request_id"], "outcome": prices})
    outcomes.to_csv(rollout_repo / "outcomes.csv", index=False)
    BURST.update(log_dir=log_dir)
    done = run(
        ["python", "-m", "mlpipeline", "rollout-report", "--log-dir", str(log_dir)], rollout_repo
    )
    assert "report: reports/rollout/rollout.md" in done.stderr
    assert (rollout_repo / "reports" / "rollout" / "rollout.md").exists()


def test_the_report_with_outcomes_rolls_the_weaker_challenger_back(rollout_repo):
    if not BURST:
        pytest.skip("needs the log of the SIGKILL test")
    command = ["python", "-m", "mlpipeline", "rollout-report", "--since", "24h"]
    command += ["--log-dir", str(BURST["log_dir"]), "--outcomes", "outcomes.csv"]
    done = run(command, rollout_repo)
    report = json.loads((rollout_repo / "reports" / "rollout" / "rollout.json").read_text())
    assert report["recommendation"] == "roll back", report["reasons"]
    assert "the challenger is worse: live rmse" in done.stderr
    assert (rollout_repo / "reports" / "rollout" / "metrics.png").stat().st_size > 1000
    runs = client(rollout_repo).search_runs(
        [client(rollout_repo).get_experiment_by_name("dvc-pipeline").experiment_id],
        filter_string="tags.`pipeline.role` = 'rollout' and "
        "tags.`rollout.recommendation` = 'roll back'",
    )
    assert runs and runs[0].data.metrics["recommendation"] == -1
    registry = ["python", "-m", "mlpipeline", "registry"]
    refused = run(
        [*registry, "promote", "--from-report", "reports/rollout/rollout.json"],
        rollout_repo,
        check=False,
    )
    assert refused.returncode == 1 and "recommends 'roll back', not 'promote'" in refused.stderr
    said = run(
        [*registry, "rollback", "--from-report", "reports/rollout/rollout.json"], rollout_repo
    )
    c, k = V["champion"], V["challenger"]
    assert f"v{k} is no longer the challenger; champion stays v{c}" in said.stderr
    assert aliases(rollout_repo) == {"champion": c}
    again = run(["python", "-m", "mlpipeline", "rollout", "build"], rollout_repo, check=False)
    assert again.returncode == 1 and "needs a challenger other than the champion" in again.stderr
    assert f"mode off; champion v{c}" in build(rollout_repo, "--mode", "off")
