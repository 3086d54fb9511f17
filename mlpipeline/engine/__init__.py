"""The one seam between the stages and how data is processed: ``engine`` in params.

``pandas`` (the default) reads each table into memory and runs the library's functions on it:
the straight line every reader follows. ``dask`` runs the same functions partition by
partition on a cluster (``mlpipeline.dask``). Each stage that reads data has its module here
(``ingest``, ``validate``, ``featurize``, ``train``), so that a stage imports only the code it
runs: its ``open_engine(params)`` yields what the stage calls, and the stage never asks which
engine it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mlpipeline.core.config import DaskParams, Params

T = TypeVar("T")


@contextmanager
def opened(params: Params, pandas: T, dask: Callable[[Any, DaskParams], T]) -> Iterator[T]:
    """``pandas``, or for ``engine: dask`` what ``dask(client, settings)`` builds on a cluster
    (closed, or disconnected from, when the block ends)."""
    if params.engine == "pandas":
        yield pandas
        return
    from mlpipeline.dask.cluster import dask_client

    with dask_client(params.runtime.dask) as client:
        yield dask(client, params.runtime.dask)
