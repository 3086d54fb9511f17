from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.features.transform import (
    FeatureError,
    FeatureSpec,
    build_features,
    category_levels,
    check_request,
    feature_matrix,
    inverse_target,
    transform_target,
)

SPEC = FeatureSpec(
    inputs=["carat", "cut", "x", "y"],
    categories={"cut": ["Good", "Ideal"]},
    derived={"area": "x * y", "ratio": "x / y"},
)


def test_features_in_spec_order_with_categories():
    raw = pd.DataFrame({"y": [2.0], "x": [3.0], "cut": ["Ideal"], "carat": [0.5], "extra": [1]})
    out = build_features(raw, SPEC)
    assert list(out.columns) == ["carat", "cut", "x", "y", "area", "ratio"]
    assert out["cut"].dtype == "category"
    assert list(out["cut"].cat.categories) == ["Good", "Ideal"]
    assert out.loc[0, "area"] == 6.0


def test_unseen_category_becomes_missing():
    raw = pd.DataFrame(
        {"carat": [0.5, 0.5], "cut": ["Martian", None], "x": [1.0, 1.0], "y": [1.0, 1.0]}
    )
    assert build_features(raw, SPEC)["cut"].isna().all()


def test_division_by_zero_becomes_missing_not_infinite():
    raw = pd.DataFrame({"carat": [0.5], "cut": ["Good"], "x": [1.0], "y": [0.0]})
    assert np.isnan(build_features(raw, SPEC).loc[0, "ratio"])


def test_missing_column_is_named():
    with pytest.raises(FeatureError, match="missing column\\(s\\): y"):
        build_features(pd.DataFrame({"carat": [1.0], "cut": ["Good"], "x": [1.0]}), SPEC)


def test_bad_expression_is_named():
    spec = FeatureSpec(inputs=["x"], derived={"bad": "x * nope"})
    with pytest.raises(FeatureError, match="derived feature 'bad'"):
        build_features(pd.DataFrame({"x": [1.0]}), spec)


def test_select_keeps_only_what_the_features_need():
    small = SPEC.select(["carat", "area"])
    assert small.inputs == ["carat", "x", "y"]
    assert small.derived == {"area": "x * y"}
    assert small.categories == {}


def test_select_keeps_the_requested_order():
    chosen = ["ratio", "cut", "area", "carat"]
    out = build_features(
        pd.DataFrame({"carat": [0.5], "cut": ["Good"], "x": [2.0], "y": [4.0]}),
        SPEC.select(chosen),
    )
    assert list(out.columns) == chosen
    assert out.loc[0, "ratio"] == 0.5


def test_select_refuses_unknown_features():
    with pytest.raises(FeatureError, match="unknown feature"):
        SPEC.select(["carat", "nope"])


def test_spec_round_trips_through_json(tmp_path):
    SPEC.to_json(tmp_path / "spec.json")
    assert FeatureSpec.from_json(tmp_path / "spec.json") == SPEC


def test_category_levels_are_sorted_strings(raw_frame):
    assert category_levels(raw_frame, ["cut"]) == {"cut": ["Good", "Ideal", "Premium", "Very Good"]}


@pytest.mark.parametrize("how", ["none", "log1p"])
def test_target_transform_round_trips(how):
    values = np.array([0.0, 326.0, 18823.0])
    np.testing.assert_allclose(inverse_target(transform_target(values, how), how), values)


def _request(**changes) -> pd.DataFrame:
    rows = {"carat": [0.5, 1.0], "cut": ["Good", "Ideal"], "x": [3.0, 4.0], "y": [3.0, 4.0]}
    return pd.DataFrame({**rows, **changes})


def test_a_well_formed_request_passes_with_numeric_columns_as_numbers():
    rows = check_request(_request(carat=["0.5", "1"]), SPEC, max_rows=10)
    assert rows["carat"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (_request().drop(columns="x"), r"missing column\(s\): \['x'\]"),
        (_request(color=["E", "F"]), r"unexpected column\(s\): \['color'\]"),
        (_request(carat=["heavy", 1.0]), r"column 'carat' must be numeric, got 'heavy' \(row 0\)"),
        (_request(cut=["Good", "Martian"]), r"'cut' has value\(s\) .*'Martian' \(row 1\)"),
        (_request(y=[1.0, np.nan]), r"column 'y' has missing values \(rows \[1\]\)"),
        (_request().head(0), "holds no rows"),
        (_request(), "holds 2 rows, more than 1"),
    ],
)
def test_bad_requests_are_refused_naming_what_is_wrong(rows, message):
    limit = 1 if "more than" in message else 10
    with pytest.raises(FeatureError, match=message):
        check_request(rows, SPEC, max_rows=limit)


def test_unseen_categories_may_be_treated_as_missing_instead():
    rows = check_request(_request(cut=["Good", "Martian"]), SPEC, 10, unseen="missing")
    assert build_features(rows, SPEC)["cut"].isna().tolist() == [False, True]


def test_columns_that_had_missing_values_in_training_accept_them():
    spec = FeatureSpec(SPEC.inputs, SPEC.categories, SPEC.derived, nullable=["y"])
    assert check_request(_request(y=[1.0, np.nan]), spec, 10)["y"].isna().sum() == 1
    assert spec.select(["carat", "y"]).nullable == ["y"]


def _booster_on_frame(spec: FeatureSpec):
    """A small LightGBM model trained on ``build_features`` frames, as the pipeline trains."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    n = 400
    raw = pd.DataFrame(
        {
            "carat": rng.uniform(0.2, 3.0, n),
            "cut": rng.choice(["Good", "Ideal"], n),
            "x": rng.uniform(3.0, 9.0, n),
            "y": rng.uniform(0.0, 9.0, n).round(0),  # zeros: ratio is missing there
        }
    )
    target = raw["carat"] * 3 + (raw["cut"] == "Ideal") + raw["x"] / raw["y"].clip(lower=1)
    params = {"verbosity": -1, "num_threads": 1, "min_child_samples": 5, "seed": 1}
    return lgb.train(params, lgb.Dataset(build_features(raw, spec), label=target), 30)


def test_the_feature_matrix_predicts_exactly_as_the_frame_does():
    booster = _booster_on_frame(SPEC)
    rows = pd.DataFrame(
        {
            "carat": [0.5, 1.0, 2.5, np.nan, 1.5],
            "cut": ["Ideal", "Martian", None, "Good", 3],  # unseen, missing, a number
            "x": [4.0, 5.0, 6.0, 7.0, 8.0],
            "y": [4.0, 0.0, 6.0, 7.0, np.nan],
        }
    )
    matrix = feature_matrix(rows, SPEC)
    frame = build_features(rows, SPEC)
    assert matrix.dtype == np.float64 and matrix.shape == (5, len(SPEC.features))
    assert np.isnan(matrix[1:3, 1]).all() and matrix[0, 1] == 1.0  # 'Ideal' is level 1
    np.testing.assert_array_equal(booster.predict(matrix), booster.predict(frame))


def test_categories_that_arrive_as_numbers_are_looked_up_as_text():
    spec = FeatureSpec(inputs=["grade"], categories={"grade": ["1", "2", "3"]})
    codes = feature_matrix(pd.DataFrame({"grade": [3, "1", 7, None]}), spec)[:, 0]
    np.testing.assert_array_equal(codes, [2.0, 0.0, np.nan, np.nan])
    assert check_request(pd.DataFrame({"grade": [3, "2"]}), spec, 10)["grade"].tolist() == [3, "2"]


def test_whole_rows_with_the_dropped_columns_and_the_target_are_accepted():
    """A scoring job sends whole rows: the columns the model ignores are accepted, unused."""
    spec = FeatureSpec(SPEC.inputs, SPEC.categories, SPEC.derived, ignored=["id", "price"])
    rows = check_request(_request(id=[7, 8], price=[1.0, None]), spec, 10)
    assert list(rows.columns) == SPEC.inputs
    with pytest.raises(FeatureError, match=r"unexpected column\(s\): \['colour'\]"):
        check_request(_request(id=[7, 8], colour=["E", "F"]), spec, 10)


DATED = FeatureSpec(inputs=["sold_on", "area"], dates=["sold_on"], nullable=["sold_on"])


def test_a_date_becomes_its_numeric_parts_in_both_feature_forms():
    rows = pd.DataFrame({"sold_on": ["2021-03-15", None, "2024-12-31T10:00:00"], "area": 1.0})
    assert DATED.features == [
        "sold_on__year",
        "sold_on__month",
        "sold_on__day",
        "sold_on__dayofweek",
        "area",
    ]
    frame = build_features(rows, DATED)
    assert frame.iloc[0, :4].tolist() == [2021, 3, 15, 0]  # a Monday
    assert frame.iloc[1, :4].isna().all()
    np.testing.assert_array_equal(feature_matrix(rows, DATED), frame.to_numpy(dtype=float))
    assert DATED.select(["sold_on__year"]).inputs == ["sold_on"]


def test_a_value_that_is_not_a_date_is_refused():
    rows = pd.DataFrame({"sold_on": ["2021-03-15", "last tuesday"], "area": [1.0, 2.0]})
    with pytest.raises(FeatureError, match=r"'sold_on' must be a date .*'last tuesday' \(row 1\)"):
        check_request(rows, DATED, 10)


def test_missing_values_follow_the_suite_not_the_training_sample():
    """The spec's nullable inputs come from the raw suite: a column the suite allows to be
    missing accepts it whether or not the training part held one; one it declares never
    missing refuses it, naming the column."""
    from mlpipeline.core.config import FeaturizeParams
    from mlpipeline.features.prepare import make_spec

    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]})
    spec = make_spec(train, FeaturizeParams(target="y"), never_missing=["b"])
    assert spec.nullable == ["a"] and spec.ignored == ["y"]
    rows = pd.DataFrame({"a": [np.nan], "b": [1.0]})
    assert check_request(rows, spec, 10)["a"].isna().all()
    with pytest.raises(FeatureError, match=r"column 'b' has missing values .* never missing"):
        check_request(rows.assign(b=np.nan), spec, 10)
