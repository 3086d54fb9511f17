"""The validate stage's engine: a suite run on one or several tables."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from mlpipeline.core.config import DaskParams, Params
from mlpipeline.data.io import read_named
from mlpipeline.engine import opened
from mlpipeline.quality.validation import load_suite, run_suite


class Validate(Protocol):
    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        """GX's result of the suite on ``[NAME=]PATH`` tables (several stacked, ``label``
        naming each row's table)."""


class PandasValidate:
    """The tables in memory, one GX run."""

    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        return run_suite(read_named(tables, label), load_suite(suite), examples)


def open_engine(params: Params) -> AbstractContextManager[Validate]:
    return opened(params, PandasValidate(), _on_cluster)


def _on_cluster(client: Any, settings: DaskParams) -> Validate:
    from mlpipeline.dask.validation import DaskValidate

    return DaskValidate()
