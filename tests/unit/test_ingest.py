from __future__ import annotations

import pandas as pd
import pytest

from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import describe, read_table, resolve_source, source_format


def test_package_source_resolves_to_the_shipped_file():
    path = resolve_source("package://plotnine/data/diamonds.csv")
    assert path.endswith("plotnine/data/diamonds.csv")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "package://no_such_package_xyz/data.csv",
            "package 'no_such_package_xyz' is not installed",
        ),
        ("package://plotnine/data/no_such_file.csv", "does not exist"),
    ],
)
def test_bad_package_sources_are_named(source, message):
    with pytest.raises(PipelineError, match=message):
        resolve_source(source)


def test_plain_paths_and_urls_pass_through():
    assert resolve_source("data/x.csv") == "data/x.csv"
    assert resolve_source("https://example.org/x.parquet") == "https://example.org/x.parquet"


@pytest.mark.parametrize(
    ("location", "declared", "expected"),
    [
        ("a.csv", "auto", "csv"),
        ("a.PARQUET", "auto", "parquet"),
        ("s3://b/a.pq?v=1", "auto", "parquet"),
        ("a.txt", "parquet", "parquet"),
    ],
)
def test_source_format(location, declared, expected):
    assert source_format(location, declared) == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_read_table_round_trips(tmp_path, raw_frame, fmt):
    path = tmp_path / f"t.{fmt}"
    raw_frame.to_csv(path, index=False) if fmt == "csv" else raw_frame.to_parquet(path)
    frame = read_table(str(path), fmt, {})
    pd.testing.assert_frame_equal(frame, raw_frame, check_dtype=False)


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (b"", "csv", "cannot read"),
        (b"a,b\n", "csv", "has no rows"),
        (b"not a parquet file", "parquet", "cannot read"),
        (b'a,b\n1,2\n3,4,5,6\n"', "csv", "cannot read"),
    ],
)
def test_broken_files_give_a_short_error(tmp_path, content, fmt, message):
    path = tmp_path / f"broken.{fmt}"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match=message) as err:
        read_table(str(path), fmt, {})
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        read_table(str(tmp_path / "nope.csv"), "csv", {})


def test_describe_hash_depends_on_content(raw_frame):
    first = describe(raw_frame, "src")
    assert first["rows"] == 6 and first["columns"] == 10
    assert first == describe(raw_frame.copy(), "src")
    changed = raw_frame.assign(price=raw_frame["price"] + 1)
    assert describe(changed, "src")["content_sha256"] != first["content_sha256"]
