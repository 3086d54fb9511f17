"""Repeated rows across partitions, found from row hashes and confirmed exactly."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from mlpipeline.dask import repeats


def _table() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "size": [1.0, 2.0, 0.0, 1.0, np.nan, 3.0, np.nan, 2.0],
            "grade": ["A", "B", "C", "A", None, "C", None, "B"],
            "price": [10, 20, 30, 10, 50, 60, 50, 21],
        }
    )
    frame.loc[5, "size"] = -0.0
    frame.loc[5, ["grade", "price"]] = ["C", 30]  # equal to row 2 (-0.0 == 0.0)
    return frame


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set({"scheduler": "synchronous", "dataframe.convert-string": False}):
        yield


def test_equal_rows_have_equal_hashes_and_others_differ():
    hashes = repeats.row_hashes(_table(), ["size", "grade", "price"])
    assert hashes[0] == hashes[3] and hashes[2] == hashes[5] and hashes[4] == hashes[6]
    assert len(set(hashes.tolist())) == 5


def test_drop_duplicates_across_partitions_matches_pandas():
    frame = _table()
    result = repeats.drop_duplicates(dd.from_pandas(frame, npartitions=3)).compute()
    expected = frame.drop_duplicates()
    pd.testing.assert_frame_equal(result.reset_index(drop=True), expected.reset_index(drop=True))


def test_rows_sharing_a_hash_are_still_compared(monkeypatch):
    """Every row given one hash: all are candidates, and only the truly equal ones go."""
    frame = _table()
    monkeypatch.setattr(repeats, "row_hashes", lambda f, c: np.zeros(len(f), dtype=np.uint64))
    result = repeats.drop_duplicates(dd.from_pandas(frame, npartitions=3)).compute()
    assert len(result) == len(frame.drop_duplicates()) == 5


def test_candidates_say_where_they_are():
    frame = _table()
    parts = dd.from_pandas(frame, npartitions=2).to_delayed()
    columns = ["grade", "price"]
    hashes = [repeats.row_hashes(part.compute(), columns) for part in parts]
    found = repeats.gather_candidates(parts, columns, hashes)
    assert found["price"].tolist() == [10, 30, 10, 50, 30, 50]
    assert found[repeats.PART].tolist() == [0, 0, 0, 1, 1, 1]
    assert found[repeats.POSITION].tolist() == [0, 2, 3, 0, 1, 2]


def test_no_second_pass_when_every_row_is_unique():
    frame = _table().drop_duplicates().iloc[:3]
    hashes = [repeats.row_hashes(frame, ["price"])]
    assert repeats.gather_candidates([], ["price"], hashes).empty
