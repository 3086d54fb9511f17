"""Ingest with Dask: the source read in blocks and written as partitioned Parquet, with the
same metadata and the same content hash as the pandas path (``mlpipeline.data.io.describe``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.core.config import DaskParams, IngestParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.dask import cluster
from mlpipeline.data.io import resolve_source, source_format, with_booleans


def describe_partitioned(frame: Any, source: str) -> dict:
    """``describe`` for a Dask dataframe: the same fields, the same content hash."""
    import dask

    parts = dask.compute(*[dask.delayed(_row_hashes)(part) for part in frame.to_delayed()])
    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    for hashes in parts:
        digest.update(hashes)
    rows = sum(len(hashes) for hashes in parts) // 8
    if rows == 0:
        raise PipelineError(f"ingest: {source} has no rows")
    return {
        "source": source,
        "rows": rows,
        "columns": frame.shape[1],
        "schema": [f"{column}: {dtype}" for column, dtype in frame.dtypes.items()],
        "content_sha256": digest.hexdigest(),
    }


def _row_hashes(part: pd.DataFrame) -> bytes:
    return pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes()


def with_boolean_columns(frame: Any) -> Any:
    """The columns that ``io.with_booleans`` makes nullable ``boolean`` in the first partition,
    cast so in every partition: the pandas path's dtypes, its content hash. A later partition
    holding other values there stops ingest (a type change part-way, as Dask reports others)."""
    texts = [c for c, dtype in frame.dtypes.items() if dtype == object]  # noqa: E721
    if not texts:
        return frame
    first = with_booleans(frame[texts].get_partition(0).compute())
    found = {c: "boolean" for c, dtype in first.dtypes.items() if str(dtype) == "boolean"}
    return frame.astype(found) if found else frame


def ingest_partitioned(params: IngestParams, blocksize: str, out: Path) -> dict:
    """Read the source with Dask and write it as partitioned Parquet; return its metadata."""
    if params.partitions:
        raise PipelineError(
            "dataset.partitions: a window of partitions is read by engine: pandas only; set "
            "engine: pandas, or point dataset.source at a folder holding the window"
        )
    location = resolve_source(params.source)
    fmt = source_format(location, params.format)
    frame = with_boolean_columns(cluster.read_source(location, fmt, params.read_options, blocksize))
    try:
        cluster.write_parquet(frame, out)
    except PipelineError:
        raise
    except Exception as exc:  # a bad row or type found while reading a later partition
        reason = cluster.read_error(exc)
        raise PipelineError(f"ingest: cannot read {location} as {fmt}: {reason}") from exc
    return describe_partitioned(cluster.read_parquet(out), params.source)


class DaskIngest:
    """``mlpipeline.engine.ingest``'s engine on a cluster: the source read in blocks."""

    def __init__(self, settings: DaskParams) -> None:
        self.settings = settings

    def ingest(self, params: IngestParams, out: Path) -> dict:
        return ingest_partitioned(params, self.settings.blocksize, out)
