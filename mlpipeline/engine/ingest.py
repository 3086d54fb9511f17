"""The ingest stage's engine: the source read and written as Parquet."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from mlpipeline.core.config import DaskParams, IngestParams, Params
from mlpipeline.data.io import describe, read_source, write_parquet
from mlpipeline.engine import opened


class Ingest(Protocol):
    def ingest(self, params: IngestParams, out: Path) -> dict:
        """Read the source, write it as Parquet to ``out``; return its metadata."""


class PandasIngest:
    """The whole table in memory."""

    def ingest(self, params: IngestParams, out: Path) -> dict:
        window = {key: (w.first, w.last) for key, w in params.partitions.items()}
        frame = read_source(params.source, params.format, params.read_options, window=window)
        write_parquet(frame, out)
        return describe(frame, params.source)


def open_engine(params: Params) -> AbstractContextManager[Ingest]:
    return opened(params, PandasIngest(), _on_cluster)


def _on_cluster(client: Any, settings: DaskParams) -> Ingest:
    from mlpipeline.dask.ingest import DaskIngest

    return DaskIngest(settings)
