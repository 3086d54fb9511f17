"""Featurize with Dask: duplicates removed across partitions (row hashes, no shuffle), then
the same ``clean``, hash split and ``build_features`` as the pandas path, per partition;
category levels from the training rows of all partitions."""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.core.config import FeaturizeParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.dask import cluster, repeats
from mlpipeline.dask.validation import DaskValidate
from mlpipeline.data.io import write_with
from mlpipeline.data.names import SPEC_FILE, TEST_FILE, TEST_ROWS_FILE, TRAIN_FILE
from mlpipeline.features.prepare import check_columns, clean, featurize, in_test_part, spec_from

TEST_COLUMN = "__test__"


def clean_tagged(frame: pd.DataFrame, params: FeaturizeParams, seed: int) -> pd.DataFrame:
    """``clean`` of one partition (duplicates are removed across partitions first), each row
    tagged test or train as ``split`` would (``in_test_part``)."""
    cleaned = _clean_rows(frame, params)[0]
    return cleaned.assign(**{TEST_COLUMN: in_test_part(cleaned, params.test_size, seed)})


def removed_rows(frame: pd.DataFrame, params: FeaturizeParams) -> pd.DataFrame:
    """How many rows of one partition each cleaning rule removes, as a one-row frame."""
    return pd.DataFrame([_clean_rows(frame, params)[1]], dtype="int64")


def _clean_rows(frame: pd.DataFrame, params: FeaturizeParams) -> tuple[pd.DataFrame, dict]:
    return clean(frame, params.model_copy(update={"drop_duplicates": False}))


def featurize_partitioned(
    params: FeaturizeParams, seed: int, data: Path, out_dir: Path, never_missing: Collection[str]
) -> dict:
    """Clean, split and featurize with Dask: each partition through the same functions."""
    import dask
    import dask.dataframe as dd

    raw = cluster.read_parquet(data)
    check_columns(raw.dtypes, params)
    deduped = repeats.drop_duplicates(raw) if params.drop_duplicates else raw
    tagged = deduped.map_partitions(
        clean_tagged,
        params,
        seed,
        meta=raw._meta.assign(**{TEST_COLUMN: pd.Series(dtype=bool)}),
    )
    removed = deduped.map_partitions(removed_rows, params, meta=removed_rows(raw._meta, params))
    staging = out_dir.parent / f".{out_dir.name}.tagged"
    rows_in, kept, removed_sums, _ = dask.compute(
        raw.shape[0],
        deduped.shape[0],
        removed.sum(),
        tagged.to_parquet(str(staging), write_index=False, compute=False),
    )
    try:
        counts = write_features(dd.read_parquet(str(staging)), params, out_dir, never_missing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    totals = {"duplicates": rows_in - kept} if params.drop_duplicates else {}
    totals |= {name: int(count) for name, count in removed_sums.items()}
    return {"rows_in": rows_in, "rows_removed": totals, **counts}


def write_features(
    tagged: Any, params: FeaturizeParams, out_dir: Path, never_missing: Collection[str]
) -> dict:
    """The spec from the training rows, then both parts featurized partition by partition."""
    import dask

    train_raw = tagged[~tagged[TEST_COLUMN]].drop(columns=TEST_COLUMN)
    test_raw = tagged[tagged[TEST_COLUMN]].drop(columns=TEST_COLUMN)
    levels, n_train, n_test = dask.compute(
        {c: train_raw[c].dropna().astype(str).unique() for c in params.categorical},
        train_raw.shape[0],
        test_raw.shape[0],
    )
    if n_train == 0 or n_test == 0:
        raise PipelineError(
            f"featurize: {n_train + n_test} rows cannot be split with test_size={params.test_size}"
        )
    categories = {c: sorted(values.tolist()) for c, values in levels.items()}
    spec = spec_from(list(train_raw.columns), categories, never_missing, params)
    for name, part in ((TRAIN_FILE, train_raw), (TEST_FILE, test_raw)):
        features = part.map_partitions(featurize, spec, params.target)
        cluster.write_parquet(features, out_dir / name)
    cluster.write_parquet(test_raw, out_dir / TEST_ROWS_FILE)
    write_with(spec.to_json, out_dir / SPEC_FILE)
    return {"train_rows": n_train, "test_rows": n_test, "features": len(spec.features)}


class DaskFeaturize(DaskValidate):
    """``mlpipeline.engine.featurize``'s engine on a cluster: partition by partition."""

    def featurize(
        self,
        params: FeaturizeParams,
        seed: int,
        data: Path,
        out_dir: Path,
        never_missing: Collection[str],
    ) -> dict:
        return featurize_partitioned(params, seed, data, out_dir, never_missing)
