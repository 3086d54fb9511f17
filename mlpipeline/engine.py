"""The one seam between the stages and how data is processed: ``engine`` in params.

``pandas`` (the default) reads each table into memory and runs the library's functions on it:
the straight line every reader follows. ``dask`` runs the same functions partition by
partition on a cluster (``mlpipeline.dask``). A stage opens its engine once
(``open_engine``) and calls it; it never asks which one it has.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from mlpipeline.config import FeaturizeParams, IngestParams, Params
from mlpipeline.expectations.validation import load_suite, run_suite
from mlpipeline.io import describe, read_named, read_source, write_parquet, write_with
from mlpipeline.names import SPEC_FILE, TEST_FILE, TEST_ROWS_FILE, TRAIN_FILE
from mlpipeline.prepare import featurize_table
from mlpipeline.search import Checkpoint, Trial
from mlpipeline.training import Fitted, Target, fit, read_split


class Engine(Protocol):
    """What a stage asks of its engine."""

    def ingest(self, params: IngestParams, out: Path) -> dict:
        """Read the source, write it as Parquet to ``out``; return its metadata."""

    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        """GX's result of the suite on ``[NAME=]PATH`` tables (several stacked, ``label``
        naming each row's table)."""

    def featurize(
        self,
        params: FeaturizeParams,
        seed: int,
        data: Path,
        out_dir: Path,
        never_missing: Collection[str],
    ) -> dict:
        """Clean, split and featurize ``data`` into ``out_dir``; return the row counts.
        ``never_missing``: the inputs the served model refuses missing."""

    def fit(
        self,
        inputs: dict[str, Path],
        target: Target,
        params: Params,
        checkpoint: Checkpoint,
        on_trial: Callable[[Trial], None],
    ) -> Fitted:
        """Search, refit and score on the train and test parts."""


class PandasEngine:
    """Every table in memory, in this process (the search's trials in worker processes)."""

    def ingest(self, params: IngestParams, out: Path) -> dict:
        window = {key: (w.first, w.last) for key, w in params.partitions.items()}
        frame = read_source(params.source, params.format, params.read_options, window=window)
        write_parquet(frame, out)
        return describe(frame, params.source)

    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        return run_suite(read_named(tables, label), load_suite(suite), examples)

    def featurize(
        self,
        params: FeaturizeParams,
        seed: int,
        data: Path,
        out_dir: Path,
        never_missing: Collection[str],
    ) -> dict:
        import pandas as pd

        prepared = featurize_table(pd.read_parquet(data), params, seed, never_missing)
        write_parquet(prepared.train, out_dir / TRAIN_FILE)
        write_parquet(prepared.test, out_dir / TEST_FILE)
        write_parquet(prepared.test_rows, out_dir / TEST_ROWS_FILE)
        write_with(prepared.spec.to_json, out_dir / SPEC_FILE)
        return {**prepared.counts, "features": len(prepared.spec.features)}

    def fit(
        self,
        inputs: dict[str, Path],
        target: Target,
        params: Params,
        checkpoint: Checkpoint,
        on_trial: Callable[[Trial], None],
    ) -> Fitted:
        x_train, values = read_split(inputs["train"], target.name)
        x_test, _ = read_split(inputs["test"], target.name)
        y_train = target.learned(values, "training")[1]
        return fit(x_train, y_train, x_test, params, checkpoint, on_trial)


@contextmanager
def open_engine(params: Params) -> Iterator[Engine]:
    """The engine ``params.engine`` names, ready for the stage (a Dask cluster is closed,
    or disconnected from, when the block ends)."""
    if params.engine == "pandas":
        yield PandasEngine()
        return
    from mlpipeline.dask.engine import dask_engine

    with dask_engine(params.runtime.dask) as engine:
        yield engine
