from __future__ import annotations

import pytest

from mlpipeline.io import atomic_dir, atomic_path, file_md5, write_json


def test_atomic_writes_leave_no_temporary_file_and_normal_permissions(tmp_path):
    write_json({"a": 1}, tmp_path / "out.json")
    assert (tmp_path / "out.json").stat().st_mode & 0o044 == 0o044
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "broken.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_the_folder_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as build:
        build.mkdir()
        (build / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as build:
        build.mkdir()
        (build / "a.txt").write_text("v2")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_file_md5_matches_known_digest(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_md5(tmp_path / "f") == "900150983cd24fb0d6963f7d28e17f72"
