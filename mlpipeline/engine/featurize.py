"""The featurize stage's engine: clean, split and featurize, then the features suite."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from mlpipeline.core.config import DaskParams, FeaturizeParams, Params
from mlpipeline.data.io import write_parquet, write_with
from mlpipeline.data.names import SPEC_FILE, TEST_FILE, TEST_ROWS_FILE, TRAIN_FILE
from mlpipeline.engine import opened
from mlpipeline.engine.validate import PandasValidate, Validate
from mlpipeline.features.prepare import featurize_table


class Featurize(Validate, Protocol):
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


class PandasFeaturize(PandasValidate):
    """The whole table in memory."""

    def featurize(
        self,
        params: FeaturizeParams,
        seed: int,
        data: Path,
        out_dir: Path,
        never_missing: Collection[str],
    ) -> dict:
        prepared = featurize_table(pd.read_parquet(data), params, seed, never_missing)
        write_parquet(prepared.train, out_dir / TRAIN_FILE)
        write_parquet(prepared.test, out_dir / TEST_FILE)
        write_parquet(prepared.test_rows, out_dir / TEST_ROWS_FILE)
        write_with(prepared.spec.to_json, out_dir / SPEC_FILE)
        return {**prepared.counts, "features": len(prepared.spec.features)}


def open_engine(params: Params) -> AbstractContextManager[Featurize]:
    return opened(params, PandasFeaturize(), _on_cluster)


def _on_cluster(client: Any, settings: DaskParams) -> Featurize:
    from mlpipeline.dask.featurize import DaskFeaturize

    return DaskFeaturize()
