"""An S3-compatible DVC remote (moto server on localhost): push from one clone, pull in another."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import BIN, local_server, run

pytestmark = pytest.mark.integration

BUCKET = "pipeline-data"
OUTPUTS = ("data/raw/data.parquet", "data/features/train.parquet", "models/lgbm/booster.txt")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto in server mode on a free localhost port, with one bucket."""
    import boto3

    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "{port}"]
    with local_server(command, "/moto-api/", tmp_path_factory.mktemp("moto")) as url:
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield url


def use_remote(repo: Path, url: str) -> None:
    """The remote in .dvc/config (shared); endpoint and credentials in .dvc/config.local."""
    run(["dvc", "remote", "add", "-f", "-d", "team", f"s3://{BUCKET}/dvc"], repo)
    for key, value in (
        ("endpointurl", url),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ):
        run(["dvc", "remote", "modify", "--local", "team", key, value], repo)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_from_one_clone_and_pull_into_another(pipeline, s3, tmp_path):
    first = tmp_path / "first"
    shutil.copytree(pipeline, first, symlinks=True)
    use_remote(first, s3)
    config = (first / ".dvc" / "config").read_text()
    assert "s3://pipeline-data/dvc" in config and "secret" not in config  # creds stay local
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "team remote"], first
    )
    run(["dvc", "push"], first)

    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    use_remote(second, s3)
    run(["dvc", "pull"], second)
    for output in OUTPUTS:
        assert digest(second / output) == digest(first / output), output
    assert "up to date" in run(["dvc", "status"], second).stdout
