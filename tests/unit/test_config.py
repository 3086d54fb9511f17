from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlpipeline.core.config import flatten, load_params
from mlpipeline.core.errors import PipelineError
from tests.helpers import make_params


def _base() -> dict:
    """Valid params with two feature sets and a search space over them."""
    params = make_params("table.csv", "y", ["a", "kind"], categorical=["kind"])
    params["train"]["feature_sets"] = {"raw": ["a"], "both": ["a", "kind"]}
    params["train"]["search"]["space"] |= {
        "learning_rate": {"type": "real", "low": 0.03, "high": 0.3, "prior": "log-uniform"},
        "feature_set": {"type": "categorical", "categories": ["raw", "both"]},
    }
    params["train"]["target_transform"] = "log1p"
    params["package"]["gate"]["thresholds"] = {"r2": 0.5}
    return params


def _write(tmp_path: Path, edit) -> Path:
    data = _base()
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_built_params_are_valid(tmp_path):
    params = load_params(_write(tmp_path, lambda d: None))
    assert params.train.search.n_calls >= 1 and params.runtime.num_threads == 1


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["train"].update(serch={"n_calls": 8}),
            "unknown key 'serch' in section 'train'",
        ),
        (
            lambda d: d["train"]["search"].update(n_cals=8),
            "unknown key 'n_cals' in section 'train.search'",
        ),
        (lambda d: d.update(trian={"x": 1}), "unknown key 'trian' in section 'top level'"),
        (lambda d: d["dataset"].pop("target"), "missing key 'dataset.target'"),
        (lambda d: d["featurize"].update(target="y"), "featurize.target: set dataset.target"),
        (
            lambda d: d["dataset"].update(categorical=["kind"], drop={"kind": "text"}),
            "column 'kind' is in both dataset.categorical and dataset.drop",
        ),
        (lambda d: d["train"]["search"].update(n_calls=0), "train.search.n_calls"),
    ],
)
def test_bad_keys_are_named(tmp_path, edit, expected):
    with pytest.raises(PipelineError) as err:
        load_params(_write(tmp_path, edit))
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        ({"type": "real", "low": 0.3, "high": 0.03}, "low (0.3) must be below high (0.03)"),
        ({"type": "real", "low": 0.0, "high": 1.0, "prior": "log-uniform"}, "needs low > 0"),
        ({"type": "real", "low": 0.1, "high": 1.0, "prior": "cauchy"}, "prior"),
        ({"type": "integer", "low": 5, "high": 5}, "must be below high"),
        ({"type": "gaussian", "low": 1, "high": 2}, "type"),
    ],
)
def test_bad_search_dimensions_fail_at_load(tmp_path, dimension, expected):
    path = _write(tmp_path, lambda d: d["train"]["search"]["space"].update(learning_rate=dimension))
    with pytest.raises(PipelineError) as err:
        load_params(path)
    assert "learning_rate" in str(err.value)
    assert expected in str(err.value)


def test_feature_set_dimension_must_name_defined_sets(tmp_path):
    def edit(d):
        d["train"]["search"]["space"]["feature_set"]["categories"] = ["raw", "nope"]

    with pytest.raises(PipelineError, match="unknown feature sets: \\['nope'\\]"):
        load_params(_write(tmp_path, edit))


def test_auto_objective_and_metric_follow_the_task(tmp_path):
    def binary(d):
        d["dataset"]["task"] = "binary"
        d["train"]["target_transform"] = "none"
        d["package"]["gate"]["thresholds"] = {"roc_auc": 0.8}

    params = load_params(_write(tmp_path, binary)).train
    assert (params.objective, params.search.metric) == ("binary", "binary_logloss")
    assert params.is_classification


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: (
                d["dataset"].update(task="binary")
                or d["train"].update(target_transform="none", objective="huber")
            ),
            "objective 'huber' does not fit task 'binary'",
        ),
        (
            lambda d: (
                d["dataset"].update(task="multiclass")
                or d["train"].update(target_transform="none")
                or d["train"]["search"].update(metric="rmse")
            ),
            "search.metric 'rmse' does not fit task 'multiclass'",
        ),
        (
            lambda d: d["dataset"].update(task="binary"),
            "target_transform must be 'none' for a binary task",
        ),
        (lambda d: d["dataset"].update(task="ranking"), "dataset.task"),
        (
            lambda d: d["package"]["gate"]["thresholds"].update(accuracy=0.9),
            "package.gate names metric(s) ['accuracy'] that a regression task does not report",
        ),
    ],
)
def test_settings_that_do_not_fit_the_task_are_named(tmp_path, edit, expected):
    with pytest.raises(PipelineError) as err:
        load_params(_write(tmp_path, edit))
    assert expected in str(err.value)


def test_broken_yaml_is_reported(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(path)


def test_flatten_nests_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1]}) == {"a.b": 1, "a.c.d": "x", "e": [1]}


def test_the_dataset_keys_reach_the_sections_that_use_them(tmp_path):
    def edit(d):
        d["dataset"].update(task="binary", drop=["note"], dates=["when"])
        d["train"]["target_transform"] = "none"
        d["package"]["gate"]["thresholds"] = {}

    params = load_params(_write(tmp_path, edit))
    assert params.train.task == "binary" and params.featurize.target == "y"
    assert params.featurize.drop == ["note"] and params.dataset.drop == {"note": ""}
    assert params.featurize.dates == ["when"] and params.ingest.source == "table.csv"


def test_a_partition_window_reaches_ingest_typed(tmp_path):
    from mlpipeline.core.config import load_params
    from tests.helpers import make_params, write_params

    params = make_params("data/sales", "y", ["x"])
    params["dataset"]["partitions"] = {"month": {"first": "2026-06"}}
    loaded = load_params(write_params(tmp_path / "params.yaml", params))
    window = loaded.ingest.partitions["month"]
    assert (window.first, window.last) == ("2026-06", None)
    text = (tmp_path / "params.yaml").read_text().replace("first: 2026-06", "first: 2026-06-01")
    (tmp_path / "params.yaml").write_text(text)  # unquoted: YAML reads a date
    assert load_params(tmp_path / "params.yaml").ingest.partitions["month"].first == "2026-06-01"
