from __future__ import annotations

import pytest

from stages.errors import StageError
from stages.featurize import clean, featurize, make_spec, split
from stages.params import FeaturizeParams


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
    with pytest.raises(StageError, match="'nope > 0'"):
        clean(raw_frame, _params(row_filters=["nope > 0"]))


def test_split_is_seeded_disjoint_and_complete(raw_frame):
    frame = raw_frame.assign(row=range(len(raw_frame)))
    train, test = split(frame, 0.34, seed=1)
    again_train, _ = split(frame, 0.34, seed=1)
    assert train.equals(again_train)
    assert len(test) == 2 and len(train) == 4
    assert set(train["row"]).isdisjoint(test["row"])


def test_split_refuses_an_empty_part(raw_frame):
    with pytest.raises(StageError, match="cannot be split"):
        split(raw_frame.head(1), 0.2, seed=1)


def test_spec_learns_categories_from_train_only(raw_frame):
    spec = make_spec(raw_frame.head(3), _params())
    assert spec.categories["cut"] == ["Good", "Ideal", "Premium"]
    assert "price" not in spec.inputs
    assert spec.features[-1] == "volume"


def test_spec_names_unknown_columns(raw_frame):
    with pytest.raises(StageError, match="\\['shape'\\]"):
        make_spec(raw_frame, _params(categorical=["cut", "shape"]))


def test_featurize_keeps_target(raw_frame):
    spec = make_spec(raw_frame, _params())
    out = featurize(raw_frame, spec, "price")
    assert list(out.columns) == [*spec.features, "price"]
    assert out["price"].tolist() == raw_frame["price"].tolist()
