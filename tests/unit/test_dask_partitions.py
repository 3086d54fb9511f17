"""engine: dask — the cluster settings, and the per-partition functions giving what the
whole-table functions give."""

from __future__ import annotations

from types import SimpleNamespace

import dask
import dask.dataframe as dd
import distributed  # registers its config defaults before any test sets dask config
import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import DaskParams, FeaturizeParams, load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.dask import cluster as engine
from mlpipeline.dask.featurize import TEST_COLUMN, clean_tagged, removed_rows
from mlpipeline.dask.ingest import describe_partitioned, with_boolean_columns
from mlpipeline.dask.training import predict_partitions, refit_on_cluster
from mlpipeline.data.io import describe, read_table
from mlpipeline.features.prepare import clean, split
from mlpipeline.features.transform import model_names
from mlpipeline.model.training import Target
from tests.helpers import make_params, write_params


def test_the_environment_names_the_cluster_before_params(monkeypatch):
    monkeypatch.delenv(engine.SCHEDULER_ENV, raising=False)
    assert engine.scheduler_address(DaskParams()) is None
    assert engine.scheduler_address(DaskParams(scheduler_address="tcp://a:8786")) == "tcp://a:8786"
    monkeypatch.setenv(engine.SCHEDULER_ENV, "tcp://b:8786")
    assert engine.scheduler_address(DaskParams(scheduler_address="tcp://a:8786")) == "tcp://b:8786"


def test_local_cluster_fills_the_cores_on_loopback_without_a_dashboard():
    shape = engine.local_cluster_shape(DaskParams(threads_per_worker=2), cores=4)
    assert shape["n_workers"] == 2 and shape["threads_per_worker"] == 2
    assert shape["host"] == "127.0.0.1" and shape["dashboard_address"] is None
    assert engine.local_cluster_shape(DaskParams(n_workers=3), cores=2)["n_workers"] == 3


def test_a_type_change_part_way_names_the_column_and_the_fix():
    message = (
        "Mismatched dtypes found in `pd.read_csv`/`pd.read_table`.\n\n"
        "+--------+---------+----------+\n| Column | Found   | Expected |\n"
        "+--------+---------+----------+\n| table  | float64 | int64    |\n"
        "+--------+---------+----------+\n\nUsually this is due to ..."
    )
    text = engine.read_error(ValueError(message))
    assert "column 'table' is float64 in a later part, int64 at the start" in text
    assert "dataset.read_options: {dtype: {table: float64}}" in text


def test_dask_params_refuse_a_stratified_split(tmp_path):
    params = make_params("t.csv", "y", ["a"])
    params["engine"] = "dask"
    params["featurize"]["stratify"] = True
    with pytest.raises(PipelineError, match=r"featurize\.stratify"):
        load_params(write_params(tmp_path / "params.yaml", params))


def test_partitioned_ingest_metadata_equals_the_whole_tables(raw_frame):
    with dask.config.set({"scheduler": "synchronous", **engine.DASK_CONFIG}):
        assert describe_partitioned(dd.from_pandas(raw_frame, npartitions=3), "s") == describe(
            raw_frame, "s"
        )


def test_cleaning_and_splitting_per_partition_equals_the_whole_table(raw_frame):
    params = FeaturizeParams(
        target="price", row_filters=["x > 0"], drop_duplicates=False, test_size=0.25
    )
    frame = pd.concat([raw_frame] * 30, ignore_index=True).assign(n=range(180))
    whole, removed = clean(frame, params)
    train, test = split(whole, 0.25, seed=7)
    parts = [frame[:70], frame[70:]]
    tagged = pd.concat([clean_tagged(p, params, seed=7) for p in parts], ignore_index=True)
    counts = pd.concat([removed_rows(p, params) for p in parts]).sum().to_dict()
    assert counts == removed
    assert set(tagged.loc[tagged[TEST_COLUMN], "n"]) == set(test["n"])
    assert set(tagged.loc[~tagged[TEST_COLUMN], "n"]) == set(train["n"])


def test_a_cluster_without_workers_stops_the_stage_instead_of_waiting(monkeypatch):
    timeout = {"distributed.scheduler.no-workers-timeout": "1s"}
    with (
        dask.config.set(timeout),
        distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as c,
    ):
        monkeypatch.setenv(engine.SCHEDULER_ENV, c.scheduler_address)
        with (
            pytest.raises(PipelineError, match=r"no worker to run .* for 1 s"),
            engine.dask_client(DaskParams()) as client,
        ):
            client.submit(sum, [1, 2]).result()


def test_booleans_with_missing_values_get_the_pandas_dtype_in_every_partition(tmp_path):
    path = tmp_path / "t.csv"
    table = {"flag": [True, None, False, True] * 500, "n": range(2000), "c": ["x", "y"] * 1000}
    pd.DataFrame(table).to_csv(path, index=False)
    with dask.config.set({"scheduler": "synchronous", **engine.DASK_CONFIG}):
        frame = with_boolean_columns(engine.read_source(str(path), "csv", {}, "4kB"))
        assert frame.npartitions > 3 and str(frame.dtypes["flag"]) == "boolean"
        assert describe_partitioned(frame, "s") == describe(read_table(str(path), "csv", {}), "s")


def test_the_cluster_refit_and_scores_use_the_boosters_names(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"mean radius": rng.normal(size=400), "a:b": rng.normal(size=400)})
    frame["y"] = 2 * frame["mean radius"] + rng.normal(scale=0.1, size=400)
    path = tmp_path / "train"
    path.mkdir()
    frame.to_parquet(path / "part.0.parquet")
    target = Target("y", SimpleNamespace(is_classification=False, target_transform="none"))
    columns = ["mean radius", "a:b"]
    params = {"num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 1}
    monkeypatch.delenv(engine.SCHEDULER_ENV, raising=False)
    with engine.dask_client(DaskParams(n_workers=1)) as client:
        booster = refit_on_cluster(client, path, columns, params, 30, target)
        scores = predict_partitions(booster, path, columns, threads=1)
    assert booster.feature_name() == model_names(columns) == ["mean_radius", "a_b"]
    assert np.corrcoef(scores, frame["y"])[0, 1] > 0.9
