"""The train stage's engine: search, refit and score."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from mlpipeline.core.config import DaskParams, Params
from mlpipeline.engine import opened
from mlpipeline.model.search import Checkpoint, Trial
from mlpipeline.model.training import Fitted, Target, fit, read_split


class Train(Protocol):
    def fit(
        self,
        inputs: dict[str, Path],
        target: Target,
        params: Params,
        checkpoint: Checkpoint,
        on_trial: Callable[[Trial], None],
    ) -> Fitted:
        """Search, refit and score on the train and test parts."""


class PandasTrain:
    """The features in memory, in this process (the search's trials in worker processes)."""

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


def open_engine(params: Params) -> AbstractContextManager[Train]:
    return opened(params, PandasTrain(), _on_cluster)


def _on_cluster(client: Any, settings: DaskParams) -> Train:
    from mlpipeline.dask.training import DaskTrain

    return DaskTrain(client)
