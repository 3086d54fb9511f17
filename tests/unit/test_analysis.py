"""The analysis of the searches: importance on trials where one dimension alone drives the
score, the robustness table's shape, the leaderboard join of DVC's experiments with MLflow's
runs (an experiment on one side only is reported, not an error), the model card's section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import Params, SearchParams
from mlpipeline.model import analysis
from mlpipeline.model.analysis import Entry
from mlpipeline.model.search import skopt_space
from tests.helpers import make_params

SPACE = {
    "learning_rate": {"type": "real", "low": 0.01, "high": 0.3, "prior": "log-uniform"},
    "num_leaves": {"type": "integer", "low": 8, "high": 128, "prior": "log-uniform"},
    "feature_fraction": {"type": "real", "low": 0.5, "high": 1.0},
    "feature_set": {"type": "categorical", "categories": ["raw", "geometry"]},
}


def search_params(space: dict | None = None) -> SearchParams:
    return SearchParams.model_validate(
        {"n_calls": 30, "n_initial_points": 5, "space": space or SPACE}
    )


def synthetic_trials(driver: str, n: int = 30, seed: int = 3) -> pd.DataFrame:
    """Random points of the space; the score depends on ``driver`` alone (plus tiny noise)."""
    search = search_params()
    dims = skopt_space(search)
    from skopt.space import Space

    points = Space(dims).rvs(n, random_state=seed)
    frame = pd.DataFrame(points, columns=[d.name for d in dims])
    rng = np.random.default_rng(seed)
    if driver == "feature_set":
        effect = np.where(frame["feature_set"] == "geometry", 0.0, 0.01)
    else:
        low, high = SPACE[driver]["low"], SPACE[driver]["high"]
        scaled = (np.log(frame[driver].astype(float)) - np.log(low)) / (np.log(high / low))
        if SPACE[driver].get("prior") != "log-uniform":
            scaled = (frame[driver] - low) / (high - low)
        effect = 0.02 * (scaled - 0.4) ** 2
    frame["score"] = 0.09 + effect + rng.normal(0, 1e-5, n)
    frame["score_std"] = 0.0005
    return frame


@pytest.mark.parametrize("driver", ["learning_rate", "feature_set", "feature_fraction"])
def test_the_one_dimension_that_drives_the_score_ranks_first(driver):
    search = search_params()
    trials = analysis.typed_trials(synthetic_trials(driver), search)
    found = analysis.sensitivity(trials, search, seed=42)
    importance = found.importance
    assert importance["dimension"].iloc[0] == driver, importance
    assert importance["share"].iloc[0] > 0.6, importance
    assert list(importance["rank"]) == [1, 2, 3, 4]
    assert set(found.curves) == set(SPACE)  # a partial dependence for every dimension
    assert list(found.curves["feature_set"]["value"]) == ["raw", "geometry"]


def test_trials_outside_the_space_or_without_a_score_are_left_out():
    frame = pd.DataFrame(
        {
            "learning_rate": ["0.1", "0.5", "0.1"],  # as MLflow keeps params: text
            "num_leaves": ["31", "31", "31"],
            "feature_fraction": [0.9, 0.9, 0.9],
            "feature_set": ["raw", "raw", "raw"],
            "score": [0.1, 0.1, math.nan],
            "score_std": [0.01, 0.01, 0.01],
        }
    )
    trials = analysis.typed_trials(frame, search_params())
    assert len(trials) == 1
    assert trials["learning_rate"].iloc[0] == 0.1 and trials["num_leaves"].iloc[0] == 31


def test_the_robustness_table_has_a_row_per_configuration_and_a_column_per_seed():
    points = [{"a": 1.0}, {"a": 2.0}, {"a": 3.0}]

    def evaluate(batch, seeds):
        return [[abs(p["a"] - 1.4 - 0.5 * (s % 2)) + s * 1e-3 for s in seeds] for p in batch]

    table = analysis.robustness(points, [1, 2, 3, 4], evaluate)
    assert table.shape == (3, 1 + 4 + 5)
    assert list(table["config"]) == ["winner", "runner-up 1", "runner-up 2"]
    assert [c for c in table.columns if c.startswith("seed ")] == [
        f"seed {s}" for s in (1, 2, 3, 4)
    ]
    assert table["first"].sum() == 4  # one best configuration per seed
    assert table["mean_rank"].between(1, 3).all()
    assert table.loc[0, "point"] == "a=1"
    sentence = analysis.read_robustness(table)
    assert "ranks first on 2 of 4 seeds" in sentence


def _params() -> Params:
    params = make_params("data.csv", "price", ["carat"])
    params["train"]["search"]["space"] = {"num_leaves": {"type": "integer", "low": 7, "high": 31}}
    return Params.model_validate(params)


def _log_train_run(client, experiment, name, n_calls, rmse, data="abc", commit="c0ffee"):
    """A finished train run with two trial children, as the train stage logs them."""
    from mlflow.entities import Metric, Param

    from mlpipeline.core.config import flatten

    tags = {"pipeline.stage": "train", "dvc.exp_name": name, "git.commit": commit}
    run = client.create_run(experiment, tags={**tags, "data.train.md5": data})
    params = flatten({"train": _params().train, "seed": 42}) | {"train.search.n_calls": n_calls}
    metrics = {"cv.search_rmse": rmse, "test.rmse": rmse * 9, "trials": n_calls}
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    for number, leaves in enumerate((9, 20)):
        child = client.create_run(experiment, tags={"mlflow.parentRunId": run.info.run_id})
        client.log_batch(
            child.info.run_id,
            metrics=[Metric("cv_score", rmse + 0.001 * number, 0, 0),
                     Metric("cv_score_std", 0.002, 0, 0)],
            params=[Param("num_leaves", str(leaves))],
        )  # fmt: skip
        client.set_terminated(child.info.run_id)
    client.set_terminated(run.info.run_id)


def _shown(name: str, rev: str, n_calls: int, rmse: float | None) -> dict:
    """One revision of ``dvc exp show --json``."""
    metrics = {} if rmse is None else {"cv": {"search_rmse": rmse}, "test": {"rmse": rmse * 9}}
    return {
        "rev": rev,
        "name": name,
        "data": {
            "params": {"params.yaml": {"data": {"train": {"search": {"n_calls": n_calls}}}}},
            "metrics": {"reports/metrics.json": {"data": {**metrics, "trials": n_calls}}},
            "deps": {"data/features": {"hash": "f.dir"}},
        },
    }


def test_the_leaderboard_joins_dvc_and_mlflow_and_reports_one_sided_experiments(mlflow_store):
    import mlflow

    from mlpipeline.commands.analyze import dvc_entries, mlflow_side

    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.create_experiment("tests")
    _log_train_run(client, experiment, "exp-both", 8, 0.090)
    _log_train_run(client, experiment, "exp-mlflow-only", 4, 0.095)
    _log_train_run(client, experiment, "other-data", 4, 0.080, data="zzz")  # another split
    shown = [
        {
            **_shown("main", "a" * 40, 16, 0.092),
            "experiments": [
                {"revs": [_shown("exp-both", "b" * 40, 8, 0.090)]},
                {"revs": [_shown("exp-dvc-only", "c" * 40, 12, 0.091)]},
            ],
        },
        {"rev": "workspace", "name": None, "data": _shown("", "workspace", 16, 0.092)["data"]},
    ]
    runs, trials = mlflow_side(_params(), "abc")
    board = analysis.leaderboard(dvc_entries(shown, "f.dir"), runs, "cv.search_rmse")

    found = dict(zip(board["experiment"], board["found in"], strict=True))
    assert found == {
        "exp-both": "DVC + MLflow",
        "exp-dvc-only": "DVC",
        "main": "DVC",
        "exp-mlflow-only": "MLflow",
        "other-data": "MLflow",
    }
    data = dict(zip(board["experiment"], board["data"], strict=True))
    assert data["other-data"] == "other" and data["exp-both"] == data["main"] == "this"
    assert list(board["cv score"]) == sorted(board["cv score"])
    both = board.set_index("experiment").loc["exp-both"]
    assert both["cv std"] == 0.002 and both["trials"] == 8 and both["rev"] == "bbbbbbb"
    assert "train.search.n_calls=8" in both["changed params"]
    assert math.isnan(board.set_index("experiment").loc["exp-dvc-only", "cv std"])
    assert len(trials) == 4  # two runs on this data version, two trials each (not other-data's)


def test_a_run_outside_an_experiment_joins_its_committed_results_by_their_metrics():
    dvc = [Entry("main", "a" * 40, {"seed": 1}, {"cv.search_rmse": 0.09, "test.rmse": 500.0})]
    old = Entry("", "f" * 40, {"seed": 1}, {"cv.search_rmse": 0.09, "test.rmse": 500.0}, started=1)
    new = Entry("", "e" * 40, {"seed": 1}, {"cv.search_rmse": 0.09, "test.rmse": 500.0}, started=2)
    other = Entry("", "d" * 40, {"seed": 2}, {"cv.search_rmse": 0.08, "test.rmse": 499.0})
    board = analysis.leaderboard(dvc, [old, new, other], "cv.search_rmse")
    assert list(board["found in"]) == ["MLflow", "DVC + MLflow"]  # best CV score first
    assert list(board["changed params"]) == ["seed=2", "seed=1"]


def test_an_empty_leaderboard_is_an_empty_table():
    assert analysis.leaderboard([], [], "cv.search_rmse").empty


def test_the_card_section_is_the_same_twice_and_names_where_the_full_analysis_is():
    search = search_params()
    history = synthetic_trials("learning_rate", n=16)
    first = analysis.card_section(history, search, seed=42)
    assert first == analysis.card_section(history, search, seed=42)
    assert first.startswith("## Sensitivity and robustness")
    assert "| 1 | learning_rate |" in first
    assert "python -m mlpipeline analyze" in first
    assert "within one CV std" in first or "more than one CV std" in first
