from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from stages.params import GateParams
from stages.registry import better, gate_decision, locked_hashes, threshold_failures

GATE = GateParams(margin=0.01, thresholds={"r2": 0.9, "rmse": 1000})


def test_direction_and_margin():
    assert better("rmse", 98.0, 100.0, 0.01) and not better("rmse", 99.5, 100.0, 0.01)
    assert better("r2", 0.95, 0.90, 0.01) and not better("r2", 0.905, 0.90, 0.01)
    assert not better("rmse", 100.0, 100.0, 0.0)  # a tie is not better


def test_thresholds_are_minimums_or_maximums_by_metric():
    assert threshold_failures({"r2": 0.95, "rmse": 500}, GATE.thresholds) == []
    assert threshold_failures({"r2": 0.8, "rmse": 1500}, GATE.thresholds) == [
        "r2 0.8 < minimum 0.9",
        "rmse 1500 > maximum 1000",
    ]


def test_the_first_model_meeting_the_thresholds_becomes_champion():
    decision = gate_decision({"r2": 0.95, "rmse": 500}, None, GATE, "rmse")
    assert decision.promote and decision.reason == "first model to meet the thresholds"


def test_a_model_below_the_thresholds_never_becomes_champion():
    decision = gate_decision({"r2": 0.5, "rmse": 900}, None, GATE, "rmse")
    assert not decision.promote and "r2 0.5 < minimum 0.9" in decision.reason


def test_a_better_challenger_replaces_the_champion_a_worse_one_does_not():
    champion = {"r2": 0.95, "rmse": 500}
    win = gate_decision({"r2": 0.96, "rmse": 480}, champion, GATE, "rmse", "3")
    assert win.promote and "beats the champion: rmse 480 vs champion v3 500" in win.reason
    lose = gate_decision({"r2": 0.95, "rmse": 497}, champion, GATE, "rmse", "3")
    assert not lose.promote and "not better by the 1.00% margin" in lose.reason
    assert (lose.challenger, lose.champion, lose.champion_version) == (497, 500, "3")


def test_lineage_hashes_come_from_dvc_lock(tmp_path: Path):
    lock = {
        "stages": {
            "ingest": {"outs": [{"path": "data/raw/data.parquet", "md5": "aa"}]},
            "featurize": {"outs": [{"path": "data/features", "md5": "bb.dir"}]},
            "train": {"outs": [{"path": "models/lgbm", "md5": "cc.dir"}]},
        }
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert locked_hashes(tmp_path / "dvc.lock") == {
        "data.raw.md5": "aa",
        "data.features.md5": "bb.dir",
        "model.lgbm.md5": "cc.dir",
    }
    assert locked_hashes(tmp_path / "missing.lock") == {}


@pytest.mark.parametrize("metric", ["rmse", "r2"])
def test_the_decision_names_its_metric(metric):
    decision = gate_decision({"r2": 0.95, "rmse": 500}, None, GATE, metric)
    assert decision.metric == metric and decision.challenger == {"r2": 0.95, "rmse": 500}[metric]


def test_a_champion_that_cannot_be_scored_stays_and_the_reason_says_so(mlflow_store):
    import mlflow

    from stages.package import judge
    from stages.params import load_params
    from tests.conftest import REPO

    class Client:  # a registry whose champion alias names a version that cannot be loaded
        def get_model_version_by_alias(self, name, alias):
            return SimpleNamespace(version="1")

    mlflow.set_tracking_uri(mlflow_store)
    params = load_params(REPO / "params.yaml")
    decision = judge(Client(), "m", "2", {"rmse": 500.0, "r2": 0.97, "mape": 5.0}, (), params)
    assert not decision.promote and decision.champion_version == "1"
    assert "champion v1 could not be scored" in decision.reason
    assert "name=m not found" in decision.reason
    assert "promote --version 2" in decision.reason
