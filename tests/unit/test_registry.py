from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlpipeline.core.config import GateParams
from mlpipeline.track.registry import (
    SPLIT_DEFINITION_TAG,
    SPLIT_TAG,
    better,
    gate_decision,
    lineage_decision,
    locked_hashes,
    settled_promotion,
    split_change,
    split_definition,
    split_digest,
    threshold_failures,
)

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


def test_a_champion_that_cannot_be_scored_stays_and_the_reason_says_so(mlflow_store, tmp_path):
    import mlflow

    from mlpipeline.core.config import load_params
    from mlpipeline.serve.packaging import judge
    from tests.helpers import make_params, write_params

    split = {"seed": 42, "test_size": 0.2}

    class Client:  # a registry whose champion alias names a version that cannot be loaded
        def get_model_version_by_alias(self, name, alias):
            return SimpleNamespace(version="1", tags={SPLIT_TAG: split_digest(split)})

    mlflow.set_tracking_uri(mlflow_store)
    built = make_params("t.csv", "y", ["a"])
    built["package"]["gate"]["thresholds"] = {"r2": 0.95}
    params = load_params(write_params(tmp_path / "params.yaml", built))
    scores = {"rmse": 500.0, "r2": 0.97, "mape": 5.0}
    decision = judge(Client(), "m", "2", scores, (), params, split)
    assert not decision.promote and decision.champion_version == "1"
    assert "champion v1 could not be scored" in decision.reason
    assert "name=m not found" in decision.reason
    assert "promote --version 2" in decision.reason


def test_a_champion_that_is_the_same_packaged_model_is_not_loaded_again(mlflow_store, tmp_path):
    import mlflow

    from mlpipeline.core.config import load_params
    from mlpipeline.serve.packaging import PACKAGE_TAG, judge
    from tests.helpers import make_params, write_params

    split = {"seed": 42, "test_size": 0.2}

    class Client:  # its champion cannot be loaded: only the digest can spare the attempt
        def get_model_version_by_alias(self, name, alias):
            tags = {SPLIT_TAG: split_digest(split), PACKAGE_TAG: "d1"}
            return SimpleNamespace(version="1", tags=tags)

    mlflow.set_tracking_uri(mlflow_store)
    params = load_params(write_params(tmp_path / "params.yaml", make_params("t.csv", "y", ["a"])))
    scores = {"rmse": 500.0, "r2": 0.97, "mape": 5.0}
    same = judge(Client(), "m", "2", scores, (), params, split, digest="d1")
    assert not same.promote and same.champion == 500.0 and same.champion_version == "1"
    assert "rmse 500 vs champion v1 500" in same.reason
    other = judge(Client(), "m", "2", scores, (), params, split, digest="d2")
    assert "champion v1 could not be scored" in other.reason


def _featurize(**changes):
    from mlpipeline.core.config import FeaturizeParams

    return FeaturizeParams(target="y", **changes)


def test_the_split_definition_names_what_decides_the_held_out_rows():
    plain = split_definition(42, _featurize(), ["a: double", "y: double"], "md5")
    assert plain == {
        "seed": 42,
        "test_size": 0.2,
        "stratify": False,
        "target": "y",
        "raw_schema": ["a: double", "y: double"],
    }  # a row's part follows its own values: the data version does not matter
    stratified = split_definition(42, _featurize(stratify=True), ["a: double"], "md5")
    assert stratified["raw_md5"] == "md5" and "row_filters" in stratified


def test_a_change_of_split_is_named_key_by_key():
    old = split_definition(42, _featurize(), ["a: double"], "md5")
    tags = {SPLIT_TAG: split_digest(old), SPLIT_DEFINITION_TAG: json.dumps(old)}
    assert split_change(tags, old) == ""
    new = split_definition(7, _featurize(test_size=0.25), ["a: double"], "md5")
    assert split_change(tags, new) == "its split differs: seed 42 -> 7; test_size 0.2 -> 0.25"
    assert "not recorded" in split_change({}, new)


def test_a_champion_from_another_split_is_decided_by_the_lineage_rule():
    scores = {"r2": 0.95, "rmse": 500}
    promote = lineage_decision(scores, GATE, "rmse", "3", "its split differs: seed 1 -> 2", "4")
    assert promote.promote and not promote.comparable and promote.champion is None
    assert promote.lineage == "champion v3: its split differs: seed 1 -> 2"
    assert "promoted by package.gate.on_lineage_change" in promote.reason
    keep_gate = GATE.model_copy(update={"on_lineage_change": "keep"})
    keep = lineage_decision(scores, keep_gate, "rmse", "3", "its split differs", "4")
    assert not keep.promote and "promote --version 4" in keep.reason
    weak = lineage_decision({"r2": 0.5, "rmse": 500}, GATE, "rmse", "3", "its split differs", "4")
    assert not weak.promote and "thresholds not met" in weak.reason


SLICES = {
    "metric": "rmse",
    "segments": {
        "cut": {
            "Fair": {"rows": 300, "rmse": 900.0, "ratio": 2.5},
            "Ideal": {"rows": 4000, "rmse": 400.0, "ratio": 0.9},
            "Rare": {"rows": 20, "rmse": 5000.0, "ratio": 10.0},  # too few rows to judge
        }
    },
}


def test_the_slice_gate_blocks_a_promotion_naming_the_segment():
    from mlpipeline.core.config import SliceGate
    from mlpipeline.track.registry import blocked_by_slices, slice_failures

    rule = SliceGate(min_rows=100, max_ratio=2.0)
    failures = slice_failures(SLICES, rule)
    assert failures == ["segment cut Fair (300 rows): rmse 2.50x the whole test part > 2x"]
    promoted = gate_decision({"r2": 0.95, "rmse": 500}, None, GATE, "rmse")
    blocked = blocked_by_slices(promoted, failures)
    assert not blocked.promote and blocked.reason.startswith(
        "package.gate.slices: segment cut Fair"
    )
    assert (
        slice_failures(SLICES, None) == [] and slice_failures(SLICES, SliceGate(max_ratio=3)) == []
    )
    kept = gate_decision({"r2": 0.5, "rmse": 500}, None, GATE, "rmse")  # already kept: unchanged
    assert blocked_by_slices(kept, failures) == kept


class MovingRegistry:
    """A registry whose champion alias another clone moves (to ``moves``, in turn) each time
    this one reads it after judging."""

    def __init__(self, champion: str | None, moves: list[str]) -> None:
        self.champion, self.moves = champion, list(moves)
        self.set: list[str] = []

    def get_model_version_by_alias(self, name, alias):
        from mlflow.exceptions import MlflowException

        if self.champion is None:
            raise MlflowException("no alias")
        return SimpleNamespace(version=self.champion, tags={})

    def set_registered_model_alias(self, name, alias, version):
        self.champion = version
        self.set.append(version)

    def set_model_version_tag(self, name, version, key, value):
        pass

    def judged(self, scores: dict[str, float], versus: dict[str, dict[str, float]]):
        """The gate against whichever version is champion when it starts; then the other
        clone may promote its own."""

        def decide():
            current = self.champion
            champion = versus.get(current) if current else None
            decision = gate_decision(scores, champion, GATE, "rmse", current)
            if self.moves:
                self.champion = self.moves.pop(0)
            return decision

        return decide


def test_a_challenger_is_judged_again_when_the_champion_moved_meanwhile():
    scores = {"rmse": 500.0, "r2": 0.95}
    versus = {"1": {"rmse": 600.0, "r2": 0.9}, "2": {"rmse": 400.0, "r2": 0.97}}
    registry = MovingRegistry("1", moves=["2"])  # v2, better than this one, won meanwhile
    decision = settled_promotion(registry, "m", "3", registry.judged(scores, versus))
    assert not decision.promote and decision.champion_version == "2"
    assert registry.champion == "2" and registry.set == []
    quiet = MovingRegistry("1", moves=[])
    assert settled_promotion(quiet, "m", "3", quiet.judged(scores, versus)).promote
    assert quiet.champion == "3" and quiet.set == ["3"]
    restless = MovingRegistry(None, moves=["1", "4", "5"])  # a new champion at every look
    versus |= {"4": versus["1"], "5": versus["1"]}
    decision = settled_promotion(restless, "m", "3", restless.judged(scores, versus))
    assert not decision.promote and "moved 3 times" in decision.reason


def test_the_train_run_of_a_booster_is_this_executions_then_this_experiments(monkeypatch):
    """Two clones training the same params write the same booster: the package stage links
    the train run of its own execution, not the newest run that wrote those bytes."""
    from mlpipeline.serve import packaging
    from mlpipeline.track.runs import EXECUTION_TAG

    def train_run(run_id, execution, experiment):
        tags = {EXECUTION_TAG: execution, "dvc.exp_name": experiment}
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(tags=tags))

    newest_first = [train_run("bob", "e2", "bob-1"), train_run("alice", "e1", "alice-1")]

    class Client:
        def search_runs(self, experiments, filter_string, order_by, max_results):
            return newest_first

    monkeypatch.setattr(packaging, "execution_key", lambda: "e1")
    monkeypatch.setenv("DVC_EXP_NAME", "bob-1")
    assert packaging.train_run_id(Client(), "1", "md5") == "alice"  # this execution's
    monkeypatch.setattr(packaging, "execution_key", lambda: "e9")
    assert packaging.train_run_id(Client(), "1", "md5") == "bob"  # this experiment's
    monkeypatch.delenv("DVC_EXP_NAME")
    newest_first.reverse()
    assert packaging.train_run_id(Client(), "1", "md5") == "alice"  # else the newest
    newest_first.clear()
    assert packaging.train_run_id(Client(), "1", "md5") == ""
