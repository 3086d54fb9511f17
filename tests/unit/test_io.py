from __future__ import annotations

import pytest

from mlpipeline.data.io import atomic_dir, atomic_path, file_md5, write_json


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


def test_a_hive_partitioned_parquet_folder_reads_as_one_table_with_typed_keys(tmp_path):
    import pandas as pd

    from mlpipeline.data.io import partition_keys, read_table, source_format

    for day, shard in (("2026-12-01", 0), ("2026-12-01", 1), ("2026-12-02", 0)):
        part = tmp_path / f"date={day}" / f"shard={shard}"
        part.mkdir(parents=True)
        pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}).to_parquet(part / "part-0000.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "date=2026-12-01" / ".part-0000.parquet.crc").write_text("crc")
    assert source_format(str(tmp_path)) == "parquet"
    frame = read_table(str(tmp_path), "parquet", {})
    assert len(frame) == 6 and list(frame.columns) == ["x", "y", "date", "shard"]
    assert frame["shard"].dtype.kind == "i" and frame["date"].tolist()[0] == "2026-12-01"
    assert partition_keys(str(tmp_path)) == ["date", "shard"]
    assert partition_keys(str(tmp_path / "date=2026-12-01" / "shard=0" / "part-0000.parquet")) == []


def test_a_folder_of_csv_parts_with_escaped_keys_and_an_empty_folder(tmp_path):
    from mlpipeline.core.errors import PipelineError
    from mlpipeline.data.io import read_table, source_format

    (tmp_path / "city=New%20York").mkdir()
    (tmp_path / "city=New%20York" / "part-1.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "city=Oslo").mkdir()
    (tmp_path / "city=Oslo" / "part-1.csv").write_text("a,b\n3,z\n")
    assert source_format(str(tmp_path)) == "csv"
    frame = read_table(str(tmp_path), "csv", {})
    assert frame["city"].tolist() == ["New York", "New York", "Oslo"]
    assert frame["a"].tolist() == [1, 2, 3]
    empty = tmp_path.parent / "empty"
    empty.mkdir()
    with pytest.raises(PipelineError, match="without data files"):
        read_table(str(empty), "csv", {})


def test_a_partition_with_other_columns_is_named(tmp_path):
    from mlpipeline.core.errors import PipelineError
    from mlpipeline.data.io import read_table

    for day, header in (("1", "a,b"), ("2", "a,c")):
        (tmp_path / f"day={day}").mkdir()
        (tmp_path / f"day={day}" / "part-0.csv").write_text(f"{header}\n1,2\n")
    with pytest.raises(PipelineError, match=r"day=2/part-0.csv .*missing \['b'\], extra \['c'\]"):
        read_table(str(tmp_path), "csv", {})


def _months(folder, months=("2026-09", "2026-10", "2026-11")):
    for month in months:
        (folder / f"month={month}").mkdir(parents=True)
        (folder / f"month={month}" / "part-0.csv").write_text(f"a,b\n{month[-1]},x\n")


def test_a_window_of_partitions_reads_only_those_and_names_a_wrong_key(tmp_path):
    from mlpipeline.core.errors import PipelineError
    from mlpipeline.data.io import read_table

    _months(tmp_path)
    window = {"month": ("2026-10", None)}
    assert read_table(str(tmp_path), "csv", {}, window=window)["month"].tolist() == [
        "2026-10",
        "2026-11",
    ]
    closed = read_table(str(tmp_path), "csv", {}, window={"month": ("2026-09", "2026-10")})
    assert len(closed) == 2
    with pytest.raises(PipelineError, match=r"\['day'\] are not partition keys .*\['month'\]"):
        read_table(str(tmp_path), "csv", {}, window={"day": (1, 2)})
    with pytest.raises(PipelineError, match=r"no partition .* widen the window"):
        read_table(str(tmp_path), "csv", {}, window={"month": ("2027-01", None)})
    (tmp_path / "t.csv").write_text("a\n1\n")
    with pytest.raises(PipelineError, match="not a partitioned folder"):
        read_table(str(tmp_path / "t.csv"), "csv", {}, window=window)


def test_numeric_bounds_compare_partition_values_as_numbers(tmp_path):
    from mlpipeline.data.io import read_table

    for shard in (2, 9, 10):
        (tmp_path / f"shard={shard}").mkdir()
        (tmp_path / f"shard={shard}" / "p.csv").write_text("a\n1\n")
    frame = read_table(str(tmp_path), "csv", {}, window={"shard": (9, 10)})
    assert sorted(frame["shard"].tolist()) == [9, 10]  # "10" < "9" as text
