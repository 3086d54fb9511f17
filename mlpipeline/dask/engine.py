"""``engine: dask``: the stages' engine (``mlpipeline.engine.Engine``) on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpipeline.config import DaskParams, FeaturizeParams, IngestParams, Params
from mlpipeline.dask import cluster
from mlpipeline.dask.featurize import featurize_partitioned
from mlpipeline.dask.ingest import ingest_partitioned
from mlpipeline.dask.training import fit_on_cluster
from mlpipeline.dask.validation import validate_partitioned
from mlpipeline.errors import PipelineError
from mlpipeline.io import read_json
from mlpipeline.search import Checkpoint, Trial
from mlpipeline.training import Fitted, Target


class DaskEngine:
    """Partitioned Parquet in and out; validation per partition, merged; trials as tasks."""

    def __init__(self, client: Any, settings: DaskParams) -> None:
        self.client, self.settings = client, settings

    def ingest(self, params: IngestParams, out: Path) -> dict:
        return ingest_partitioned(params, self.settings.blocksize, out)

    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        return validate_partitioned(read_tables(tables, label), read_json(suite), examples)

    def featurize(
        self,
        params: FeaturizeParams,
        seed: int,
        data: Path,
        out_dir: Path,
        never_missing: Collection[str],
    ) -> dict:
        return featurize_partitioned(params, seed, data, out_dir, never_missing)

    def fit(
        self,
        inputs: dict[str, Path],
        target: Target,
        params: Params,
        checkpoint: Checkpoint,
        on_trial: Callable[[Trial], None],
    ) -> Fitted:
        return fit_on_cluster(self.client, inputs, target, params, checkpoint, on_trial)


def read_tables(tables: list[str], label: str) -> Any:
    """``[NAME=]PATH`` Parquet files or partitioned folders as one lazy Dask dataframe."""
    import dask.dataframe as dd

    named = [spec.split("=", 1) if "=" in spec else ["", spec] for spec in tables]
    frames = []
    for name, source in named:
        if not Path(source).exists():
            raise PipelineError(f"validate: {source} does not exist")
        frame = cluster.read_parquet(source)
        frames.append(frame.assign(**{label: name}) if len(named) > 1 else frame)
    return dd.concat(frames) if len(frames) > 1 else frames[0]


@contextmanager
def dask_engine(params: DaskParams) -> Iterator[DaskEngine]:
    with cluster.dask_client(params) as client:
        yield DaskEngine(client, params)
