"""Every params-related failure says which key to change, and what it holds now."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlpipeline.core.config import FeaturizeParams, SuiteBuildParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.features.prepare import check_columns
from mlpipeline.quality.suite import build_suite
from mlpipeline.quality.validation import check_suite_fits

TABLE = pd.DataFrame(
    {
        "bill": [39.1, 39.5, 40.3],
        "island": ["Torgersen", "Biscoe", "Dream"],
        "sex": ["male", "female", None],
        "species": ["Adelie", "Gentoo", "Adelie"],
    }
)


def test_a_suite_built_for_other_data_names_the_key_and_the_fix(tmp_path):
    suite = tmp_path / "raw.json"
    columns = ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    suite.write_text(
        json.dumps(
            {
                "expectations": [
                    {
                        "type": "expect_table_columns_to_match_ordered_list",
                        "kwargs": {"column_list": columns},
                    }
                ]
            }
        )
    )
    with pytest.raises(PipelineError) as err:
        check_suite_fits(suite, list(TABLE.columns), "validate.suite")
    message = str(err.value)
    assert f"validate.suite = {suite} describes 10 columns, the data has 4" in message
    assert "python -m mlpipeline init" in message and "build-suite" in message
    check_suite_fits(suite, columns[:-1], "validate.suite")  # one missing column: the report's


def test_a_categorical_column_that_is_not_there_names_dataset_categorical():
    params = FeaturizeParams(target="species", categorical=["island", "cut"])
    with pytest.raises(PipelineError) as err:
        check_columns(TABLE.dtypes, params)
    message = str(err.value)
    assert "dataset.categorical names column(s) the data does not have: ['cut']" in message
    assert "fix dataset.categorical" in message


def test_a_text_column_without_a_role_is_named_before_lightgbm_sees_it():
    params = FeaturizeParams(target="species", categorical=["island"])
    with pytest.raises(PipelineError) as err:
        check_columns(TABLE.dtypes, params)
    message = str(err.value)
    assert "['sex'] hold text or dates but are in none of dataset.categorical" in message
    assert "dataset.drop" in message and "init" in message
    check_columns(TABLE.dtypes, FeaturizeParams(target="species", categorical=["island", "sex"]))


def test_a_positive_column_that_is_not_there_names_validate_build_positive():
    with pytest.raises(PipelineError) as err:
        build_suite(TABLE, "raw", SuiteBuildParams(positive=["x", "bill"]))
    message = str(err.value)
    assert "validate.build.positive names column(s) the data does not have: ['x']" in message


def test_a_csv_read_as_one_column_names_the_separator_to_set(tmp_path):
    from mlpipeline.data.io import read_table

    TABLE.to_csv(tmp_path / "t.csv", sep=";", index=False)
    with pytest.raises(PipelineError, match=r"set dataset.read_options: \{sep: ';'\}"):
        read_table(str(tmp_path / "t.csv"), "csv", {})
    assert read_table(str(tmp_path / "t.csv"), "csv", {"sep": ";"}).shape == TABLE.shape
