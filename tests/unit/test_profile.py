"""What ``init`` infers from a table: the task, each column's role, and the written params."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlpipeline.commands import init
from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.profile import infer_task, profile, role
from tests.helpers import REPO


def houses(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 200, rows)
    return pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + rows),
            "area": np.where(rng.random(rows) < 0.05, np.nan, area),
            "district": rng.choice(["north", "south", "east"], rows),
            "sold_on": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "notes": [f"a note about listing {i}" for i in rng.integers(0, 10_000, rows)],
            "agency": "acme",
            "price": np.where(rng.random(rows) < 0.1, np.nan, np.exp(area / 25) * 1000),
        }
    )


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (pd.Series(np.linspace(0, 1, 50)), "regression"),
        (pd.Series(["yes", "no", "yes"]), "binary"),
        (pd.Series([0, 1, 1, 0]), "binary"),
        (pd.Series(["a", "b", "c", "a"]), "multiclass"),
        (pd.Series([1, 2, 3, 4, 5] * 3), "multiclass"),
    ],
)
def test_the_task_follows_the_target(values, task):
    assert infer_task(values) == task


def test_a_target_with_too_many_labels_is_refused():
    with pytest.raises(PipelineError, match="too many classes"):
        infer_task(pd.Series([f"label {i}" for i in range(30)]))


def test_each_column_gets_a_role_and_dropped_ones_a_reason():
    found = profile(houses(), "price")
    assert found.task == "regression" and found.target_transform == "log1p"
    assert found.categorical == ["district"] and found.dates == ["sold_on"]
    assert set(found.drop) == {"id", "notes", "agency"}
    assert found.drop["id"].startswith("identifier") and found.drop["agency"].startswith("constant")
    assert found.drop["notes"].startswith("free text")
    assert found.features == [
        "area",
        "district",
        "sold_on__year",
        "sold_on__month",
        "sold_on__day",
        "sold_on__dayofweek",
    ]
    assert found.rows_without_target == int(houses()["price"].isna().sum())


def test_distinct_codes_are_identifiers_and_distinct_sentences_free_text():
    codes = pd.Series([f"A-{i:05d}" for i in range(300)])
    sentences = pd.Series([f"a quiet flat number {i}" for i in range(300)])
    assert role(codes, 50).startswith("identifier")
    assert role(sentences, 50).startswith("free text")


def test_a_float_column_of_distinct_values_is_a_feature_not_an_identifier():
    assert role(pd.Series(np.random.default_rng(0).normal(size=100)), 50) == "feature"


def test_init_writes_params_that_load_and_writes_the_same_bytes_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "expectations").mkdir()
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    houses().to_csv(tmp_path / "houses.csv", index=False)
    argv = ["--source", "houses.csv", "--target", "price", "--drop", "district"]
    assert init.main(argv) == 0
    first = {p.name: p.read_bytes() for p in [tmp_path / "params.yaml", *tmp_path.glob("*/*.json")]}
    assert init.main(argv) == 0
    again = {p.name: p.read_bytes() for p in [tmp_path / "params.yaml", *tmp_path.glob("*/*.json")]}
    assert first == again and len(first) == 3
    params = load_params(tmp_path / "params.yaml")
    assert params.dataset.drop["district"] == "dropped by --drop"
    assert params.train.feature_sets == {
        "all": ["area", *(f"sold_on__{p}" for p in ("year", "month", "day", "dayofweek"))]
    }
    assert "feature_set" not in params.train.search.space
    assert params.package.model_name == "houses-price"
    assert params.package.intended_use.startswith("TODO")
    written = (tmp_path / "params.yaml").read_text()
    assert "# What describes the data." in written  # the file's comments are kept
    assert yaml.safe_load(written)["dataset"]["task"] == "regression"


def test_a_name_for_every_row_is_an_identifier_even_in_a_tiny_table():
    """mtcars: 32 car names in 32 rows (fewer than max_categories) are not a category."""
    names = pd.Series(["Mazda RX4", "Mazda RX4 Wag", "Datsun 710", "Hornet 4 Drive"] * 8)
    names = names + pd.Series([f" #{i}" for i in range(32)])
    assert role(names, 50).startswith("identifier")
    nearly = pd.Series([f"car {i}" for i in range(95)] + ["car 1"] * 5)
    assert role(nearly, 50).startswith("identifier")


@pytest.mark.parametrize(
    ("counts", "choice"),
    [({"a": 40, "b": 12, "c": 10}, "reject"), ({"a": 40, "b": 12, "c": 3}, "missing")],
)
def test_a_category_with_rare_values_scores_new_ones_and_a_closed_set_refuses_them(counts, choice):
    values = pd.Series([v for v, n in counts.items() for _ in range(n)])
    frame = pd.DataFrame({"kind": values, "y": np.arange(len(values), dtype=float)})
    found = profile(frame, "y")
    assert found.unseen == {"kind": choice}
    assert "kind" in found.kept and "rarest" in found.kept["kind"]


def test_a_partition_key_is_dropped_with_its_reason():
    x = np.random.default_rng(0).normal(size=60)
    frame = pd.DataFrame({"month": ["2026-09", "2026-10"] * 30, "x": x, "y": x * 2})
    found = profile(frame, "y", keys=("month",))
    assert "partition key" in found.drop["month"] and found.features == ["x"]


@pytest.mark.parametrize(
    ("rows", "values", "fixed"),
    [
        (90, 12, {"max_cat_to_onehot": 12}),  # msleep-like: ~4 training rows per value
        (90, 3, {}),  # as few values as LightGBM splits one against the rest anyway
        (20_000, 12, {}),  # enough rows per value for grouped splits
    ],
)
def test_a_small_table_splits_each_category_value_against_the_rest(rows, values, fixed):
    rng = np.random.default_rng(1)
    kinds = [f"k{i}" for i in range(values)]
    frame = pd.DataFrame(
        {"kind": np.resize(kinds, rows), "x": rng.normal(size=rows), "y": rng.normal(size=rows)}
    )
    found = profile(frame, "y")
    assert found.categorical == ["kind"] and found.fixed == fixed
