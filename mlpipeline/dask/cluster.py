"""The Dask cluster, and partitioned Parquet in and out.

The cluster is an existing one (``DASK_SCHEDULER_ADDRESS``, or ``runtime.dask.scheduler_address``
in params) or a ``LocalCluster`` sized to this machine, bound to 127.0.0.1. Dask is imported
only in this subpackage, and only when the engine is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpipeline.core.config import DaskParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import atomic_dir
from mlpipeline.model.boosting import cores

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


DASK_CONFIG = {
    "dataframe.convert-string": False,
    # a task that no worker is left to run fails (an error below) instead of waiting for ever
    "distributed.scheduler.no-workers-timeout": "120s",
}


def scheduler_address(params: DaskParams) -> str | None:
    """The existing cluster to use: the environment variable first, then params."""
    return os.environ.get(SCHEDULER_ENV) or params.scheduler_address


def local_cluster_shape(params: DaskParams, cores: int) -> dict[str, Any]:
    """``LocalCluster`` arguments: one worker process per core unless params say otherwise."""
    return {
        "n_workers": params.n_workers or max(1, cores // params.threads_per_worker),
        "threads_per_worker": params.threads_per_worker,
        "memory_limit": params.memory_limit,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
    }


ENVIRONMENT = {
    "DASK_LOGGING__DISTRIBUTED": "error",  # task errors are reported once
    # a worker short of memory spills to disk and, past its limit, is restarted (an error
    # below), instead of pausing silently for ever
    "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "False",
    # keep pandas' own column types (Dask would turn text into string[pyarrow]), so both
    # engines give the same tables and content hashes
    "DASK_DATAFRAME__CONVERT_STRING": "False",
    # Parquet buffers go back to the OS when freed (pyarrow's own pool keeps them), so a
    # worker's memory follows the partitions it holds
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


@contextmanager
def dask_client(params: DaskParams) -> Iterator[Any]:
    """A ``distributed.Client``: on the named cluster, or on a LocalCluster closed afterwards.
    A cluster whose workers die or vanish stops the stage with the reason and the fix."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    import dask
    from distributed import KilledWorker
    from distributed.scheduler import NoValidWorkerError, NoWorkerError

    dask.config.set(DASK_CONFIG)
    address = scheduler_address(params)
    try:
        with _existing(address) if address else _local(params) as client:
            yield client
    except KilledWorker as exc:
        raise PipelineError(cluster_failure(exc.task, None, params)) from exc
    except (NoWorkerError, NoValidWorkerError) as exc:
        raise PipelineError(cluster_failure(exc.task, exc.timeout, params)) from exc


@contextmanager
def _existing(address: str) -> Iterator[Any]:
    from distributed import Client

    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise PipelineError(f"dask: cannot reach the scheduler at {address}: {exc}") from exc
    log.info("dask: cluster at %s", address)
    with client:
        yield client


@contextmanager
def _local(params: DaskParams) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    shape = local_cluster_shape(params, cores())
    with LocalCluster(**shape) as cluster, Client(cluster) as client:
        workers, threads = shape["n_workers"], shape["threads_per_worker"]
        log.info(
            "dask: LocalCluster, %d worker(s) x %d thread(s), memory limit %s each",
            workers,
            threads,
            params.memory_limit,
        )
        yield client


def cluster_failure(task: Any, waited: float | None, params: DaskParams) -> str:
    """What to say when the cluster could not run a task: its workers kept dying on it, or
    none was left (or ever joined) for ``waited`` seconds."""
    advice = (
        f"most likely out of memory (runtime.dask.memory_limit: {params.memory_limit}); give "
        f"them more memory or read smaller partitions (runtime.dask.blocksize)"
    )
    if waited is None:
        return f"dask: workers died running {task!r}, {advice}"
    return (
        f"dask: no worker to run {task!r} for {waited:.0f} s: none joined the cluster, or "
        f"they died, {advice}"
    )


CSV_SAMPLE = 16 * 2**20  # CSV bytes (at most one block) that column types are inferred from
CSV_SAMPLE_ROWS = 100_000  # ...and rows of it (Dask's defaults: 256 kB, 10 rows)


def read_source(location: str, fmt: str, options: dict, blocksize: str) -> Any:
    """A lazy Dask dataframe of a CSV or Parquet file, directory or glob."""
    import dask.dataframe as dd
    from dask.utils import parse_bytes

    try:
        if fmt == "parquet":
            return dd.read_parquet(location, blocksize=blocksize, **options)
        sample = min(CSV_SAMPLE, parse_bytes(blocksize))
        return dd.read_csv(
            location, blocksize=blocksize, sample=sample, sample_rows=CSV_SAMPLE_ROWS, **options
        )
    except FileNotFoundError as exc:
        raise PipelineError(f"ingest: source not found: {location}") from exc
    except Exception as exc:  # readers raise many types; all mean "unreadable"
        raise PipelineError(f"ingest: cannot read {location} as {fmt}: {first_line(exc)}") from exc


def read_parquet(path: Path | str, columns: list[str] | None = None) -> Any:
    """A lazy Dask dataframe of a Parquet file or partitioned directory."""
    import dask.dataframe as dd

    return dd.read_parquet(str(path), columns=columns)


def write_parquet(frame: Any, path: Path) -> None:
    """Write a Dask dataframe as a directory of Parquet parts, replacing ``path`` atomically."""
    with atomic_dir(path) as build:
        frame.to_parquet(str(build), write_index=False, engine="pyarrow")


def read_error(exc: BaseException) -> str:
    """Dask's read error in one line; a column whose type changes part-way is named, with the
    params setting that fixes it."""
    text = str(exc)
    if "Mismatched dtypes" not in text:
        return first_line(exc)
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and "Column" not in line
    ]
    named = "; ".join(
        f"column '{c}' is {found} in a later part, {expected} at the start"
        for c, found, expected in rows
    )
    fix = ", ".join(f"{c}: {found}" for c, found, _ in rows)
    return f"{named} (set dataset.read_options: {{dtype: {{{fix}}}}})"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
