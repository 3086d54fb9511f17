from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import FeaturizeParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.features.prepare import clean, featurize, in_test_part, make_spec, split


def _params(**overrides) -> FeaturizeParams:
    base = {
        "target": "price",
        "categorical": ["cut", "color", "clarity"],
        "row_filters": ["x > 0", "y > 0", "z > 0"],
        "derived": {"volume": "x * y * z"},
    }
    return FeaturizeParams(**{**base, **overrides})


def test_clean_removes_duplicates_and_filtered_rows(raw_frame):
    cleaned, removed = clean(raw_frame, _params())
    assert len(cleaned) == 4
    assert removed == {
        "duplicates": 1,
        "missing_target": 0,
        "row_filter_1": 1,
        "row_filter_2": 0,
        "row_filter_3": 0,
    }


def test_clean_can_keep_duplicates(raw_frame):
    cleaned, _ = clean(raw_frame, _params(drop_duplicates=False, row_filters=[]))
    assert len(cleaned) == len(raw_frame)


def test_bad_filter_is_named(raw_frame):
    with pytest.raises(PipelineError, match="'nope > 0'"):
        clean(raw_frame, _params(row_filters=["nope > 0"]))


def _numbered(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"row": range(rows), "value": np.arange(rows) % 7})


def test_split_is_seeded_disjoint_and_complete():
    frame = _numbered(1000)
    train, test = split(frame, 0.3, seed=1)
    again_train, _ = split(frame, 0.3, seed=1)
    other_train, _ = split(frame, 0.3, seed=2)
    assert train.equals(again_train) and not train.equals(other_train)
    assert 250 <= len(test) <= 350 and len(train) + len(test) == 1000
    assert set(train["row"]).isdisjoint(test["row"])


def test_a_rows_part_depends_on_its_values_only():
    """Row order and partitioning do not move a row between parts (engine: dask relies on it),
    and new rows do not move old ones."""
    frame = _numbered(500)
    _, test = split(frame, 0.2, seed=3)
    _, shuffled_test = split(frame.sample(frac=1, random_state=0), 0.2, seed=3)
    _, grown_test = split(_numbered(800), 0.2, seed=3)
    halves = [in_test_part(part, 0.2, seed=3) for part in (frame[:250], frame[250:])]
    assert set(shuffled_test["row"]) == set(test["row"])
    assert set(test["row"]) == set(grown_test["row"][grown_test["row"] < 500])
    assert np.concatenate(halves).sum() == len(test)


def test_stratified_split_keeps_class_shares():
    frame = pd.DataFrame({"row": range(400), "label": ["a"] * 300 + ["b"] * 100})
    _, test = split(frame, 0.25, seed=1, stratify_by="label")
    assert len(test) == 100 and (test["label"] == "b").sum() == 25


def test_split_refuses_an_empty_part(raw_frame):
    with pytest.raises(PipelineError, match="cannot be split"):
        split(raw_frame.head(1), 0.2, seed=1)


def test_spec_learns_categories_from_train_only(raw_frame):
    spec = make_spec(raw_frame.head(3), _params())
    assert spec.categories["cut"] == ["Good", "Ideal", "Premium"]
    assert "price" not in spec.inputs
    assert spec.features[-1] == "volume"


def test_spec_names_unknown_columns(raw_frame):
    with pytest.raises(PipelineError, match="\\['shape'\\]"):
        make_spec(raw_frame, _params(categorical=["cut", "shape"]))


def test_featurize_keeps_target(raw_frame):
    spec = make_spec(raw_frame, _params())
    out = featurize(raw_frame, spec, "price")
    assert list(out.columns) == [*spec.features, "price"]
    assert out["price"].tolist() == raw_frame["price"].tolist()


def test_a_class_of_one_row_stays_in_the_training_part_with_a_warning(caplog):
    frame = pd.DataFrame({"x": range(41), "kind": ["a"] * 20 + ["b"] * 20 + ["c"]})
    train, test = split(frame, 0.25, 1, "kind")
    assert "c" in set(train["kind"]) and "c" not in set(test["kind"])
    assert (test["kind"] == "a").sum() == (test["kind"] == "b").sum() == 5
    assert "['c']" in caplog.text and "training part" in caplog.text


def test_a_stratified_split_with_fewer_test_rows_than_classes_says_what_to_do():
    frame = pd.DataFrame({"x": range(20), "kind": list("abcdefghij") * 2})
    with pytest.raises(PipelineError, match=r"featurize\.stratify: false or change"):
        split(frame, 0.1, 1, "kind")
