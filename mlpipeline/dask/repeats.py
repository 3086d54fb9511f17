"""Repeated rows of a partitioned table (``engine: dask``), found without a shuffle.

A shuffle moves every row between workers and holds them in a worker's memory, which fails on
a table larger than the workers. Here each worker hashes the rows of its partition (8 bytes a
row), the hashes meet on the client, and only the rows whose hash occurs more than once —
the candidates — are gathered and compared exactly, so different rows that happen to share
a hash are still told apart. The client holds 8 bytes a row plus the candidate rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PART = "__part__"  # partition number of a candidate row
POSITION = "__position__"  # its position within that partition


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns``; equal values, equal hashes."""
    values = frame[columns]
    floats = values.select_dtypes("floating").columns
    # -0.0 == 0.0, but their bits (which pandas hashes) differ
    values = values.assign(**{c: values[c] + 0.0 for c in floats})
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def repeated(hashes: list[np.ndarray]) -> np.ndarray:
    """The hashes that occur more than once, over all partitions."""
    if not hashes:
        return np.empty(0, dtype=np.uint64)
    values, counts = np.unique(np.concatenate(hashes), return_counts=True)
    return values[counts > 1]


def candidate_rows(
    frame: pd.DataFrame, columns: list[str], hashes: np.ndarray, number: int
) -> pd.DataFrame:
    """The rows of partition ``number`` whose hash is in ``hashes``, tagged with where they are."""
    positions = np.flatnonzero(np.isin(row_hashes(frame, columns), hashes))
    return frame.iloc[positions].assign(**{PART: number, POSITION: positions})


def gather_candidates(
    parts: list[Any], columns: list[str], hashes: list[np.ndarray]
) -> pd.DataFrame:
    """Every row of the partitions (Dask delayed) that may equal another on ``columns``, in
    table order, with ``PART`` and ``POSITION`` (``hashes``: each partition's row hashes)."""
    import dask

    found = repeated(hashes)
    if len(found) == 0:  # every row is unique: no second pass over the data
        return pd.DataFrame()
    shared = dask.delayed(found)  # one copy in the graph, not one per task
    pick = dask.delayed(candidate_rows)
    return pd.concat(dask.compute(*[pick(p, columns, shared, n) for n, p in enumerate(parts)]))


def later_copies(candidates: pd.DataFrame, columns: list[str]) -> dict[int, np.ndarray]:
    """Positions, by partition, of the rows equal on ``columns`` to an earlier row (what
    ``drop_duplicates`` removes, keeping the first)."""
    if candidates.empty:
        return {}
    copies = candidates[candidates.duplicated(subset=columns, keep="first")]
    return {
        int(number): group[POSITION].to_numpy()
        for number, group in copies.groupby(PART, sort=False)
    }


def drop_positions(frame: pd.DataFrame, positions: np.ndarray | None) -> pd.DataFrame:
    """``frame`` without the rows at ``positions``."""
    if positions is None or len(positions) == 0:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    keep[positions] = False
    return frame[keep]


def drop_duplicates(frame: Any) -> Any:
    """A Dask dataframe without rows equal to an earlier row, partitions kept in place."""
    import dask
    import dask.dataframe as dd

    parts = frame.to_delayed()
    columns = list(frame.columns)
    hashes = dask.compute(*[dask.delayed(row_hashes)(part, columns) for part in parts])
    drops = later_copies(gather_candidates(parts, columns, list(hashes)), columns)
    drop = dask.delayed(drop_positions)
    kept = [drop(part, drops.get(n)) for n, part in enumerate(parts)]
    return dd.from_delayed(kept, meta=frame._meta, verify_meta=False)
