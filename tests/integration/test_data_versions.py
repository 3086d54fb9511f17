"""Your data, versioned: ``init`` puts the source under DVC and ingest depends on it, so a
changed table is a new data version — a local CSV edited in place, a partition added to or
removed from a Parquet folder, a new object version in S3 (moto on 127.0.0.1) — and an old
version gives the old model back, byte for byte; a second clone pulls the same versions. Bad
sources end with a message naming them, and nothing that was good is lost.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import copy_repository
from tests.integration.conftest import (
    BIN,
    free_port,
    git_commit,
    local_server,
    restore,
    run,
    set_params,
)
from tests.integration.test_your_data import houses

pytestmark = pytest.mark.integration

S3 = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def small_search(params: dict) -> None:
    params["train"]["search"].update(n_calls=3, n_initial_points=2, max_rounds=60)


def fresh(tmp: Path) -> Path:
    """A repository copy without a lock, committed (a clone, as a user starts)."""
    repo = copy_repository(tmp / "repo")
    (repo / "dvc.lock").unlink()
    git_commit(repo, "copy")
    return repo


def adapted(repo: Path, source: str, extra_env: dict | None = None, *init: str) -> Path:
    """``repo`` after ``init --source SOURCE`` and a small search, committed."""
    command = ["python", "-m", "mlpipeline", "init", "--source", source, "--target", "price"]
    run([*command, *init], repo, extra_env=extra_env)
    set_params(repo, small_search)
    git_commit(repo, f"init on {source}")
    return repo


def repro(repo: Path, extra_env: dict | None = None) -> dict:
    """``dvc repro``, committed; the metrics and ingest's report it wrote."""
    run(["dvc", "repro"], repo, extra_env=extra_env)
    if run(["git", "status", "--porcelain"], repo).stdout:  # nothing, when it restored
        git_commit(repo, "dvc repro")
    return {
        "metrics": (repo / "reports" / "metrics.json").read_bytes(),
        "rows": json.loads((repo / "reports" / "ingest.json").read_text())["rows"],
    }


def stale(repo: Path, extra_env: dict | None = None) -> str:
    return run(["dvc", "status"], repo, extra_env=extra_env).stdout


def lock_dependency(repo: Path, path: str) -> dict:
    deps = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest"]["deps"]
    return next(d for d in deps if d["path"] == path)


def newest_run_tags(repo: Path, stage: str) -> dict:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`dvc.stage` = '{stage}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].data.tags


def trial_runs(repo: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.run_name LIKE 'trial %'")


def test_a_local_csv_edited_in_place_is_a_new_version_and_the_old_one_comes_back(tmp_path):
    repo = fresh(tmp_path)
    table = repo / "data" / "my houses.csv"
    houses(400, seed=1).to_csv(table, index=False)
    adapted(repo, "data/my houses.csv")
    assert "${dataset.source}" in (repo / "dvc.yaml").read_text()
    assert (repo / "data" / "my houses.csv.dvc").exists()
    assert "/my houses.csv" in (repo / "data" / ".gitignore").read_text()  # DVC's, committed
    first = repro(repo)
    assert "up to date" in stale(repo)
    version = lock_dependency(repo, "data/my houses.csv")["md5"]
    assert newest_run_tags(repo, "train")["data.source.md5"] == version
    assert {run.data.tags.get("data.source.md5") for run in trial_runs(repo)} == {version}

    edited = pd.read_csv(table)
    edited.loc[3, "area"] += 1.0  # one value
    edited.drop(edited.sample(15, random_state=0).index).to_csv(table, index=False)
    assert "ingest" in stale(repo) and "modified:           data/my houses.csv" in stale(repo)
    second = repro(repo)
    assert second["rows"] == first["rows"] - 15 and second["metrics"] != first["metrics"]
    card = (repo / "reports" / "model_card.md").read_text()
    assert lock_dependency(repo, "data/my houses.csv")["md5"] in card

    run(["git", "checkout", "-q", "HEAD~1"], repo)  # last month's data, params and lock
    run(["dvc", "checkout"], repo)
    assert pd.read_csv(table).shape[0] == first["rows"]
    assert repro(repo)["metrics"] == first["metrics"]
    run(["dvc", "repro", "--force"], repo)  # rebuilt, not only restored: the same bytes
    assert (repo / "reports" / "metrics.json").read_bytes() == first["metrics"]


def write_partition(folder: Path, day: str, rows: pd.DataFrame) -> None:
    part = folder / f"sold_month={day}"
    part.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(part / "part-0000.parquet", index=False)
    (folder / "_SUCCESS").touch()


def test_a_partition_added_is_seen_and_removed_gives_the_old_result_back(tmp_path):
    repo = fresh(tmp_path)
    folder = repo / "data" / "sales"
    table = houses(600, seed=2).drop(columns=["sold_on"])
    for month, rows in zip(("2026-09", "2026-10"), (table[:100], table[100:500]), strict=True):
        write_partition(folder, month, rows)
    adapted(repo, "data/sales")
    first = repro(repo)
    assert first["rows"] == 500

    write_partition(folder, "2026-11", table[500:])
    assert "ingest" in stale(repo)
    second = repro(repo)
    assert second["rows"] == 600 and second["metrics"] != first["metrics"]
    frame = pd.read_parquet(repo / "data" / "raw" / "data.parquet")
    assert sorted(frame["sold_month"].unique()) == ["2026-09", "2026-10", "2026-11"]

    shutil.rmtree(folder / "sold_month=2026-11")
    assert "ingest" in stale(repo)
    assert repro(repo)["metrics"] == first["metrics"]

    mixed = table[:50].rename(columns={"area": "surface"})
    write_partition(folder, "2026-12", mixed)
    done = run(["dvc", "repro"], repo, check=False)
    assert done.returncode != 0
    assert "sold_month=2026-12/part-0000.parquet" in done.stderr and "Traceback" not in done.stderr
    assert "missing ['area'], extra ['surface']" in done.stderr
    shutil.rmtree(folder / "sold_month=2026-12")
    restore(repo)  # git checkout -- . && dvc checkout: the last good outputs, from the cache
    assert "up to date" in stale(repo)
    assert (repo / "reports" / "metrics.json").read_bytes() == first["metrics"]

    set_params(repo, lambda p: p["dataset"].update(partitions={"sold_month": {"first": "2026-10"}}))
    assert "dataset.partitions" in stale(repo)
    assert repro(repo)["rows"] == 400  # the window: October on


@pytest.fixture
def bucket(tmp_path):
    """moto's S3 on a free 127.0.0.1 port with a bucket ``tables``; the environment to use it."""
    import boto3

    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "{port}"]
    with local_server(command, "/moto-api/", tmp_path) as url:
        env = {**S3, "AWS_ENDPOINT_URL": url}
        client = boto3.client("s3", endpoint_url=url, **_boto(S3))
        client.create_bucket(Bucket="tables")
        yield client, env


def _boto(env: dict) -> dict:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def upload(client, frame: pd.DataFrame, key: str) -> str:
    client.put_object(Bucket="tables", Key=key, Body=frame.to_csv(index=False).encode())
    return client.head_object(Bucket="tables", Key=key)["ETag"].strip('"')


def test_an_s3_object_overwritten_is_fetched_by_dvc_update_and_named_by_its_etag(tmp_path, bucket):
    client, env = bucket
    first_etag = upload(client, houses(400, seed=3), "houses/houses.csv")
    repo = adapted(fresh(tmp_path), "s3://tables/houses/houses.csv", env)
    imported = yaml.safe_load((repo / "data" / "external" / "houses.csv.dvc").read_text())
    assert imported["deps"][0]["etag"] == first_etag
    first = repro(repo, env)
    assert newest_run_tags(repo, "package")["data.source.origin_version"] == f"etag {first_etag}"

    second_etag = upload(client, houses(450, seed=3), "houses/houses.csv")
    run(["dvc", "update", "data/external/houses.csv.dvc"], repo, extra_env=env)
    assert "ingest" in stale(repo, env)
    second = repro(repo, env)
    assert second["rows"] != first["rows"]
    for stage in ("ingest", "train", "package"):
        assert newest_run_tags(repo, stage)["data.source.origin_version"] == f"etag {second_etag}"
    assert second_etag in (repo / "reports" / "model_card.md").read_text()


def test_in_place_the_lock_records_the_object_version_and_status_sees_a_new_one(tmp_path, bucket):
    client, env = bucket
    first_etag = upload(client, houses(400, seed=4), "big/houses.csv")
    repo = adapted(fresh(tmp_path), "s3://tables/big/houses.csv", env, "--in-place")
    assert not (repo / "data" / "external").exists()  # nothing copied
    repro(repo, env)
    assert lock_dependency(repo, "s3://tables/big/houses.csv")["etag"] == first_etag
    upload(client, houses(420, seed=4), "big/houses.csv")
    assert "modified:           s3://tables/big/houses.csv" in stale(repo, env)


def test_a_second_clone_pulls_the_same_versions_and_has_nothing_to_run(tmp_path):
    repo = fresh(tmp_path)
    houses(300, seed=5).to_csv(repo / "data" / "houses.csv", index=False)
    adapted(repo, "data/houses.csv")
    run(["dvc", "remote", "add", "-d", "team", str(tmp_path / "remote")], repo)
    first = repro(repo)
    run(["dvc", "push"], repo)

    second = tmp_path / "teammate"
    run(["git", "clone", "-q", str(repo), str(second)], tmp_path)
    run(["dvc", "pull"], second)
    assert (second / "data" / "houses.csv").read_bytes() == (
        repo / "data" / "houses.csv"
    ).read_bytes()
    assert "up to date" in stale(second)
    assert "didn't change, skipping" in run(["dvc", "repro"], second).stdout
    assert (second / "reports" / "metrics.json").read_bytes() == first["metrics"]


def test_bad_sources_are_named_and_nothing_is_changed(tmp_path):
    repo = fresh(tmp_path)
    init = ["python", "-m", "mlpipeline", "init", "--target", "price", "--source"]
    closed = f"http://127.0.0.1:{free_port()}/houses.csv"
    for source, named in (("data/nowhere.csv", "data/nowhere.csv"), (closed, closed)):
        done = run([*init, source], repo, check=False)
        assert done.returncode != 0 and named in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert run(["git", "status", "--porcelain"], repo).stdout == ""  # nothing written
