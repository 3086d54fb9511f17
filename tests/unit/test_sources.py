"""How ``init`` puts a source table under DVC, and the version every run names — pure
functions over paths and texts, no DVC command run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import dvc_md5
from mlpipeline.data.sources import (
    SOURCE_DEPENDENCY,
    is_url,
    origin_version,
    source_tags,
    source_version,
    tracking,
    with_source_dependency,
)

DVC_YAML = """stages:
  ingest:   # reads the source
    cmd: python stages/ingest.py
    deps:
      - stages/ingest.py
      - mlpipeline/data/io.py
      - stages/__init__.py
    params:
      - dataset.source
  validate:
    cmd: python stages/validate.py
    deps:
      - mlpipeline/data/io.py
"""


def test_ingest_gets_the_source_dependency_once_and_loses_it_for_a_package_table():
    tracked = with_source_dependency(DVC_YAML, tracked=True)
    assert tracked.count(SOURCE_DEPENDENCY) == 1
    deps = yaml.safe_load(tracked)["stages"]["ingest"]["deps"]
    assert deps == [
        "stages/ingest.py",
        "mlpipeline/data/io.py",
        "stages/__init__.py",
        "${dataset.source}",
    ]
    assert yaml.safe_load(tracked)["stages"]["validate"]["deps"] == ["mlpipeline/data/io.py"]
    assert with_source_dependency(tracked, tracked=True) == tracked  # init twice: one line
    assert with_source_dependency(tracked, tracked=False) == DVC_YAML


def test_a_dvc_yaml_without_the_ingest_stage_is_named():
    with pytest.raises(PipelineError, match="no ingest stage"):
        with_source_dependency("stages:\n  train:\n    cmd: x\n", tracked=True)


def test_a_package_table_stays_as_it_is(tmp_path):
    plan = tracking("package://plotnine/data/diamonds.csv", tmp_path)
    assert plan.source == "package://plotnine/data/diamonds.csv" and plan.command == ()


def test_a_file_inside_the_repository_is_added_by_its_relative_path(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my table.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    plan = tracking("data/my table.csv", tmp_path)
    assert plan.source == "data/my table.csv"
    assert plan.command == ("add", "data/my table.csv")
    assert tracking(str(tmp_path / "data" / "my table.csv"), tmp_path) == plan  # absolute too


def test_a_path_outside_the_repository_or_a_url_is_imported_into_data_external(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "elsewhere" / "sales.parquet"
    repo.mkdir()
    plan = tracking(str(outside), repo)
    assert plan.source == "data/external/sales.parquet"
    assert plan.command == ("import-url", "--force", str(outside), "data/external/sales.parquet")
    url = tracking("s3://bucket/tables/sales.csv?versionId=7", repo)
    assert url.source == "data/external/sales.csv" and url.command[2].startswith("s3://")
    assert is_url("https://example.org/t.csv") and not is_url("package://plotnine/x.csv")


def test_an_earlier_import_is_kept_and_a_stranger_in_its_place_refused(tmp_path):
    external = tmp_path / "data" / "external"
    external.mkdir(parents=True)
    (external / "sales.csv").write_text("a\n1\n")
    with pytest.raises(PipelineError, match=r"not an import of s3://b/sales\.csv"):
        tracking("s3://b/sales.csv", tmp_path)
    imported = {"deps": [{"path": "s3://b/sales.csv", "etag": "abc"}], "outs": []}
    (external / "sales.csv.dvc").write_text(yaml.safe_dump(imported))
    again = tracking("s3://b/sales.csv", tmp_path)  # init again on the same URL: re-imported
    assert again.command[:2] == ("import-url", "--force")
    inside = tracking(str(external / "sales.csv"), tmp_path)  # the import itself: left as is
    assert inside.source == "data/external/sales.csv" and inside.command == ()


def test_the_source_version_comes_from_the_lock_and_an_import_from_its_dvc_file(tmp_path):
    lock = {
        "schema": "2.0",
        "stages": {
            "ingest": {
                "deps": [
                    {"path": "data/external/sales.csv", "md5": "f" * 32},
                    {"path": "mlpipeline/data/io.py", "md5": "a" * 32},
                    {"path": "stages/ingest.py", "md5": "b" * 32},
                ]
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert source_version(tmp_path) == {
        "data.source": "data/external/sales.csv",
        "data.source.md5": "f" * 32,
    }
    (tmp_path / "data" / "external").mkdir(parents=True)
    imported = {"deps": [{"path": "s3://b/sales.csv", "etag": "e1", "size": 9}]}
    (tmp_path / "data" / "external" / "sales.csv.dvc").write_text(yaml.safe_dump(imported))
    assert source_version(tmp_path)["data.source.origin_version"] == "etag e1"
    assert source_version(tmp_path)["data.source.origin"] == "s3://b/sales.csv"


def test_no_lock_or_a_package_source_has_no_source_version(tmp_path):
    assert source_version(tmp_path) == {}
    lock = {"stages": {"ingest": {"deps": [{"path": "stages/ingest.py", "md5": "b" * 32}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert source_version(tmp_path) == {}
    assert origin_version(tmp_path / "missing.dvc") == {}


def test_ingest_tags_the_md5_dvc_will_record_for_a_file_and_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("t.csv").write_text("a\n1\n")
    Path("parts/day=1").mkdir(parents=True)
    Path("parts/day=1/part-0.csv").write_text("a\n1\n")
    expected = {"data.source": "t.csv", "data.source.md5": dvc_md5(Path("t.csv"))}
    assert source_tags("t.csv") == expected
    assert source_tags("parts")["data.source.md5"].endswith(".dir")
    assert source_tags("package://plotnine/data/diamonds.csv") == {}
    url = f"file://{tmp_path / 't.csv'}"  # a store that reports no ETag: the URL alone
    assert source_tags(url) == {"data.source": url}


def test_in_place_leaves_a_url_or_outside_path_where_it_is_as_a_dependency(tmp_path):
    plan = tracking("s3://bucket/big.parquet", tmp_path, in_place=True)
    assert plan.source == "s3://bucket/big.parquet" and plan.command == () and plan.dependency
    inside = tmp_path / "t.csv"
    inside.write_text("a\n1\n")
    assert tracking(str(inside), tmp_path, in_place=True).command == ("add", "t.csv")
    assert not tracking("package://plotnine/data/diamonds.csv", tmp_path).dependency


def test_a_source_read_in_place_has_the_version_its_lock_records(tmp_path):
    dep = {"path": "s3://b/big.parquet", "etag": "e9", "size": 1}
    lock = {"stages": {"ingest": {"deps": [dep, {"path": "stages/ingest.py", "md5": "a"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert source_version(tmp_path) == {
        "data.source": "s3://b/big.parquet",
        "data.source.origin": "s3://b/big.parquet",
        "data.source.origin_version": "etag e9",
    }
