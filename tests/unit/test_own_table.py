"""A property of ``init``: the suites it builds from a table accept that table, and a random
sample of it read back from CSV as a batch; the served model's request checks accept the
sample's rows. Tables come from a seeded generator of the things ordinary tables hold —
booleans (with and without missing values), real duplicate rows, missing values, 20-row
tables, names with spaces, dots and non-ASCII letters, dates with and without a zone,
integer-coded categories, rare category values, row identifiers — so each seed is another
table; no DVC, no repository params.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlpipeline.commands import init
from mlpipeline.commands.build_suite import featurized_parts
from mlpipeline.core.config import load_params
from mlpipeline.data.io import read_json, read_source
from mlpipeline.features.prepare import featurize_table
from mlpipeline.features.transform import check_request
from mlpipeline.quality.monitoring import (
    INVALID,
    check_batch,
    optional_columns,
    read_batch,
    verdict,
)
from mlpipeline.quality.suite import never_missing
from mlpipeline.quality.validation import build_report, load_suite, run_suite
from tests.helpers import make_params, write_params

NAMES = ["price total", "size.m2", "höhe", "état", "rooms", "flag", "maybe", "when", "stamp"]


def random_table(seed: int) -> tuple[pd.DataFrame, str]:
    """A table of 20 to 400 rows with a random selection of awkward columns; its target."""
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([20, 37, 80, 150, 400]))
    size = rng.lognormal(4, 0.4, rows).round(1)
    kinds = rng.choice(["regression", "binary", "multiclass"])
    columns: dict[str, object] = {
        "size.m2": size,
        "höhe": rng.integers(1, 5, rows),  # an integer-coded category (few values)
        "état": rng.choice(["neuf", "bon", "usé", "à rénover"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "rooms": np.clip(np.round(size / 30), 1, None),
        "flag": rng.random(rows) < 0.3,
        "maybe": pd.array(rng.random(rows) < 0.5, dtype="boolean"),
        "maker": rng.choice([f"m{i}" for i in range(12)], rows),  # open-ended: rare values
        "when": (
            pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D")
        ).strftime("%Y-%m-%d"),
        "stamp": (
            pd.Timestamp("2021-06-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10**6, rows), "min")
        ).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "id": np.arange(rows) + 1000,
        "name": [f"row-{i:05d}" for i in rng.permutation(rows)],
    }
    score = np.log(size) + (columns["état"] == "neuf") + rng.normal(0, 0.2, rows)
    if kinds == "regression":
        columns["price total"] = np.exp(score).round(2) * 1000
    elif kinds == "binary":
        columns["price total"] = np.where(score > np.median(score), "high", "low")
    else:
        columns["price total"] = pd.qcut(score, 3, labels=["low", "mid", "high"]).astype(str)
    frame = pd.DataFrame(columns)
    keep = rng.random(len(frame.columns)) < 0.8
    keep[frame.columns.get_loc("price total")] = keep[frame.columns.get_loc("size.m2")] = True
    frame = frame.loc[:, keep]
    for column in frame.columns:
        if column not in ("price total", "id", "name") and rng.random() < 0.4:
            frame[column] = frame[column].astype(object).where(rng.random(rows) > 0.1)
    if rng.random() < 0.5:  # real duplicate rows
        frame = pd.concat([frame, frame.sample(max(2, rows // 10), random_state=seed)])
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True), "price total"


@pytest.fixture
def adapted(tmp_path, monkeypatch):
    """``init`` run on a table in an empty folder; returns a function of the seed."""
    monkeypatch.chdir(tmp_path)

    def run(seed: int) -> tuple[pd.DataFrame, object]:
        table, target = random_table(seed)
        table.to_csv("table.csv", index=False)
        write_params(tmp_path / "params.yaml", make_params("table.csv", target, ["size.m2"]))
        assert init.main(["--source", "table.csv", "--target", target]) == 0
        return table, load_params(tmp_path / "params.yaml")

    return run


def critical(report: dict) -> list[str]:
    failed = [i for i in report["results"] if not i["success"] and i["severity"] == "critical"]
    return [f"{i['expectation']} {i['kwargs'].get('column')}: {i['result']}" for i in failed]


@pytest.mark.parametrize("seed", range(12))
def test_the_suites_init_builds_accept_their_table_and_a_sample_of_it(adapted, tmp_path, seed):
    _, params = adapted(seed)
    raw = init.as_ingested(read_source("table.csv"))  # what ingest writes
    raw_suite = params.validate_.suite
    assert critical(build_report(run_suite(raw, load_suite(raw_suite), 3), raw_suite)) == []
    features = featurized_parts(raw, params, "split", never_missing(read_json(raw_suite)))
    features_suite = params.validate_.features_suite
    report = build_report(run_suite(features, load_suite(features_suite), 3), features_suite)
    assert critical(report) == []
    # another split (``dvc exp run -S seed=...``): rare values move between train and test
    other = params.model_copy(update={"seed": params.seed + 1 + seed})
    features = featurized_parts(raw, other, "split", never_missing(read_json(raw_suite)))
    report = build_report(run_suite(features, load_suite(features_suite), 3), features_suite)
    assert critical(report) == []

    raw.sample(frac=0.3, random_state=seed).to_csv(tmp_path / "sample.csv", index=False)
    batch = read_batch(str(tmp_path / "sample.csv"), params.dataset, raw_suite)
    validation = check_batch(batch, raw_suite, optional_columns(params), 3)
    assert critical(validation) == [] and verdict(validation, [])[0] != INVALID

    spec = featurize_table(
        raw, params.featurize, params.seed, never_missing(read_json(raw_suite))
    ).spec
    unseen = params.package.unseen_categories
    check_request(batch, spec, max_rows=10_000, unseen=unseen)  # raises if a row is refused


def test_init_says_why_it_kept_or_dropped_each_column(adapted, capsys):
    table, params = adapted(3)
    said = capsys.readouterr().err
    for column in table.columns.drop("price total"):
        assert f"    {column}: " in said
    dataset = yaml.safe_load(Path("params.yaml").read_text())["dataset"]
    assert "name" in dataset["drop"] or "name" not in table
    assert params.validate_.build.duplicate_tolerance is None
