"""Canary routing, the prediction log (writer, rotation, a cut-off last line) and the rollout
report's numbers and recommendation, on synthetic logs."""

from __future__ import annotations

import datetime as dt
import json
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlpipeline.core.config import Params
from mlpipeline.core.errors import PipelineError
from mlpipeline.features.transform import FeatureSpec
from mlpipeline.serve.live import PredictionLog, bucket, log_files, read_log, to_challenger
from mlpipeline.serve.rollout_report import (
    KEEP,
    PROMOTE,
    ROLL_BACK,
    log_frame,
    outcome_frame,
    recommend,
    render_markdown,
    since_time,
    summarize,
)
from tests.helpers import make_params

# ---- routing -------------------------------------------------------------------------------


def test_a_key_always_gets_the_same_bucket_and_the_share_is_kept():
    keys = [f"customer-{i}" for i in range(20_000)]
    assert [bucket(k, "7") for k in keys[:50]] == [bucket(k, "7") for k in keys[:50]]
    chosen = np.array([to_challenger(k, 0.3, "7") for k in keys])
    assert chosen.mean() == pytest.approx(0.3, abs=0.015)
    assert not any(to_challenger(k, 0.0, "7") for k in keys[:1000])
    assert all(to_challenger(k, 1.0, "7") for k in keys[:1000])


def test_a_larger_share_keeps_the_keys_the_challenger_had_and_a_new_salt_draws_again():
    keys = [str(i) for i in range(5000)]
    at_10 = {k for k in keys if to_challenger(k, 0.1, "2")}
    at_30 = {k for k in keys if to_challenger(k, 0.3, "2")}
    assert at_10 < at_30
    other = {k for k in keys if to_challenger(k, 0.1, "3")}
    assert len(at_10 & other) < 0.3 * len(at_10)  # about 10% overlap, as chance has it


def test_the_bucket_does_not_depend_on_the_process():
    """BLAKE2b, not ``hash()``: fixed values, the same on every machine."""
    assert bucket("request-42", "2") == pytest.approx(
        int.from_bytes(__import__("hashlib").blake2b(b"2:request-42", digest_size=8).digest())
        / 2**64
    )


# ---- the log -------------------------------------------------------------------------------


def _log(folder, rotate_bytes=1 << 20) -> PredictionLog:
    return PredictionLog(folder, rotate_bytes, lambda item: [json.dumps({"n": item})])


def test_records_are_written_in_the_background_and_read_back_in_order(tmp_path):
    log = _log(tmp_path)
    caller = threading.get_ident()
    seen = []
    log.prepare = lambda item: seen.append(threading.get_ident()) or [json.dumps({"n": item})]
    for i in range(200):
        log.append(i)
    assert log.flush()
    found = read_log(tmp_path)
    assert [r["n"] for r in found.records] == list(range(200))
    assert caller not in seen and log.written == 200
    log.close()
    assert not found.partial and not found.corrupt


def test_files_rotate_by_size_and_each_closed_file_is_whole(tmp_path):
    log = _log(tmp_path, rotate_bytes=4096)
    for i in range(2000):
        log.append(i)
    log.close()
    files = log_files(tmp_path)
    assert len(files) > 3
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n") and len(data) <= 4096 + 20
        assert all(json.loads(line) for line in data.splitlines())
    assert [r["n"] for r in read_log(tmp_path).records] == list(range(2000))


def test_a_cut_off_last_line_is_skipped_and_named(tmp_path):
    log = _log(tmp_path)
    for i in range(10):
        log.append(i)
    log.close()
    (path,) = log_files(tmp_path)
    with open(path, "ab") as handle:
        handle.write(b'{"n": 10, "cut off he')  # a write a SIGKILL cut short
    found = read_log(tmp_path)
    assert [r["n"] for r in found.records] == list(range(10))
    assert found.partial == [path.name] and found.corrupt == []


def test_a_bad_item_is_counted_and_the_log_goes_on(tmp_path):
    log = PredictionLog(tmp_path, 1 << 20, lambda item: [json.dumps({"n": 1 / item})])
    for item in (1, 0, 2):
        log.append(item)
    log.close()
    assert [r["n"] for r in read_log(tmp_path).records] == [1.0, 0.5]
    assert log.failures == 1


# ---- the report ----------------------------------------------------------------------------


def _params(**report) -> Params:
    built = make_params("t.csv", "y", ["a", "kind"], ["kind"])
    built["rollout"] = {"mode": "shadow", "report": {"bootstrap": 200, **report}}
    return Params.model_validate(built)


def _rows(count: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"a": rng.uniform(0, 10, count) + shift, "kind": rng.choice(["low", "high"], count)}
    )


def _records(inputs: pd.DataFrame, champion: np.ndarray, challenger: np.ndarray) -> list[dict]:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    return [
        {
            "request_id": f"r{i}",
            "time": (start + dt.timedelta(seconds=i)).isoformat(),
            "mode": "shadow",
            "champion": "1",
            "challenger": "2",
            "answered_by": "1",
            "latency_ms": 2.0,
            "outputs": {"1": float(champion[i]), "2": float(challenger[i])},
            "inputs": inputs.iloc[i].to_dict(),
        }
        for i in range(len(inputs))
    ]


SPEC = FeatureSpec(["a", "kind"], categories={"kind": ["high", "low"]})


class _Read:
    def __init__(self, records):
        self.records, self.files, self.partial, self.corrupt = records, 1, [], []


def _report(records, outcomes=None, reference=None, **report) -> dict:
    found = _Read(records)
    frame = log_frame(found)  # type: ignore[arg-type]
    reference = _rows(2000, seed=9) if reference is None else reference
    return summarize(found, frame, outcomes, (reference, SPEC), _params(**report))  # type: ignore[arg-type]


def test_a_better_challenger_with_outcomes_is_promoted():
    rng = np.random.default_rng(1)
    inputs = _rows(800)
    truth = 3 * inputs["a"].to_numpy() + rng.normal(0, 1, 800)
    records = _records(inputs, truth + rng.normal(0, 4, 800), truth + rng.normal(0, 2, 800))
    outcomes = outcome_frame(
        pd.DataFrame({"request_id": [f"r{i}" for i in range(800)], "y": truth}), "y"
    )
    summary = _report(records, outcomes)
    assert summary["recommendation"] == PROMOTE, summary["reasons"]
    rmse = summary["outcomes"]["metrics"]["rmse"]
    assert rmse["challenger"]["value"] < rmse["champion"]["value"]
    assert (
        0 < rmse["improvement"]["low"] < rmse["improvement"]["value"] < rmse["improvement"]["high"]
    )
    assert summary["drift"]["drifted"] == []
    text = render_markdown(summary, ["metrics"], ["python -m mlpipeline registry promote"])
    assert "**Recommendation: promote**" in text and "| rmse |" in text


def test_a_worse_challenger_is_rolled_back_and_a_tie_is_watched():
    rng = np.random.default_rng(2)
    inputs = _rows(800)
    truth = 3 * inputs["a"].to_numpy()
    good, bad = truth + rng.normal(0, 1, 800), truth + rng.normal(0, 3, 800)
    outcomes = pd.DataFrame({"request_id": [f"r{i}" for i in range(800)], "outcome": truth})
    assert _report(_records(inputs, good, bad), outcomes)["recommendation"] == ROLL_BACK
    same = _report(_records(inputs, good, good + rng.normal(0, 0.01, 800)), outcomes)
    assert same["recommendation"] == KEEP


def test_drifted_live_inputs_are_named():
    inputs = _rows(600, shift=6.0)  # "a" moved; "kind" did not
    predictions = 3 * inputs["a"].to_numpy()
    summary = _report(_records(inputs, predictions, predictions * 1.01))
    assert summary["drift"]["drifted"] == ["a"]
    assert "live inputs drifted from the training rows: a" in summary["reasons"]
    assert summary["recommendation"] == KEEP  # no outcomes: nothing proves it better
    assert summary["agreement"]["share"] == 1.0


def test_without_outcomes_diverging_predictions_roll_back_and_few_rows_keep_watching():
    inputs = _rows(600)
    predictions = 3 * inputs["a"].to_numpy()
    apart = _report(_records(inputs, predictions, predictions * 3 + 20))
    assert apart["recommendation"] == ROLL_BACK
    assert apart["agreement"]["prediction_psi"] > 0.25
    few = _report(_records(inputs.head(50), predictions, predictions * 3))
    assert few["recommendation"] == KEEP and "fewer than min_rows" in few["reasons"][-1]


def test_the_challenger_failing_on_rows_rolls_it_back():
    inputs = _rows(600)
    predictions = 3 * inputs["a"].to_numpy()
    records = _records(inputs, predictions, predictions)
    for record in records[:30]:
        record["errors"] = {"2": "column 'kind' has value(s) the model was not trained on"}
    summary = _report(records)
    assert summary["challenger_error_rate"] == pytest.approx(0.05)
    assert summary["recommendation"] == ROLL_BACK


def test_recommend_on_a_log_without_a_challenger_keeps_watching():
    summary = {"drift": {}, "challenger": None, "rows": 10_000}
    assert recommend(summary, _params().rollout.report)[0] == KEEP


def test_since_takes_a_duration_or_a_time():
    now = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)
    assert since_time("24h", now) == dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    assert since_time("30m", now) == dt.datetime(2026, 12, 2, 11, 30, tzinfo=dt.UTC)
    assert since_time("2026-12-01T09:00", now) == dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    assert since_time(None) is None
    with pytest.raises(PipelineError, match="neither a duration"):
        since_time("yesterday")


def test_outcomes_need_a_request_id_and_an_outcome():
    with pytest.raises(PipelineError, match="'request_id' and 'outcome'"):
        outcome_frame(pd.DataFrame({"id": [1], "y": [2.0]}), "y")
    found = outcome_frame(pd.DataFrame({"request_id": [1, 1], "price": [2.0, 3.0]}), "price")
    assert found.to_dict("records") == [{"request_id": "1", "outcome": 3.0}]


def test_rollout_mode_off_written_bare_in_yaml_reads_as_off():
    built = make_params("t.csv", "y", ["a"])
    built["rollout"] = {"mode": False}  # what YAML 1.1 makes of `mode: off`
    assert Params.model_validate(built).rollout.mode == "off"


def test_the_router_and_its_log_run_without_this_repository():
    """router.py and live.py travel inside the router model: they import nothing of this
    repository, and the router names the shipped log module as the builder ships it."""
    import ast

    from mlpipeline.data.names import SHIPPED_LIVE
    from mlpipeline.serve import live, router

    for module in (router, live):
        tree = ast.parse(open(module.__file__).read())  # noqa: SIM115 - the file itself
        imported = [
            alias.name if isinstance(node, ast.Import) else node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        ]
        assert not [m for m in imported if m and m.startswith("mlpipeline")], module.__name__
    constants = {
        node.targets[0].id: node.value.value
        for node in ast.parse(open(router.__file__).read()).body  # noqa: SIM115
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }
    assert constants["LIVE_MODULE"] == SHIPPED_LIVE


class _Registry:
    """Aliases and tags of one registered model, as much of MlflowClient as the code uses."""

    def __init__(self, **aliases: str) -> None:
        self.aliases, self.tags = dict(aliases), {}

    def get_model_version_by_alias(self, name, alias):
        from mlflow.exceptions import MlflowException

        if alias not in self.aliases:
            raise MlflowException(f"no alias {alias}")
        return SimpleNamespace(version=self.aliases[alias], tags={})

    def get_model_version(self, name, version):
        return SimpleNamespace(version=version, tags={})

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = str(version)

    def delete_registered_model_alias(self, name, alias):
        del self.aliases[alias]

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(str(version), key)] = value


def _verdict(recommendation: str) -> dict:
    return {"model": "m", "champion": "1", "challenger": "2", "recommendation": recommendation}


def test_promote_from_a_report_needs_its_recommendation_and_its_champion():
    from mlpipeline.track.registry import promote_from_report

    registry = _Registry(champion="1", challenger="2")
    with pytest.raises(PipelineError, match="recommends 'keep watching', not 'promote'"):
        promote_from_report(registry, "m", _verdict(KEEP), "r.json")
    moved = _Registry(champion="3", challenger="2")
    with pytest.raises(PipelineError, match=r"the champion changed since r\.json"):
        promote_from_report(moved, "m", _verdict(PROMOTE), "r.json")
    assert promote_from_report(registry, "m", _verdict(PROMOTE), "r.json") == ("1", "2")
    assert registry.aliases["champion"] == "2"


def test_rollback_from_a_report_takes_the_challenger_out_or_restores_the_champion():
    from mlpipeline.track.registry import rollback_from_report

    registry = _Registry(champion="1", challenger="2")
    done = rollback_from_report(registry, "m", _verdict(ROLL_BACK), "r.json")
    assert done == "v2 is no longer the challenger; champion stays v1"
    assert registry.aliases == {"champion": "1"} and registry.tags[("2", "rollout.rolled_back")]
    promoted = _Registry(champion="2", challenger="2")  # promoted by hand meanwhile
    assert rollback_from_report(promoted, "m", _verdict(ROLL_BACK), "r.json") == (
        "champion v2 -> v1"
    )
    with pytest.raises(PipelineError, match="not 'roll back'"):
        rollback_from_report(registry, "m", _verdict(PROMOTE), "r.json")


def test_a_rollout_needs_a_champion_and_a_challenger_other_than_it():
    from mlpipeline.serve.rollout import rollout_versions

    with pytest.raises(PipelineError, match="has no champion"):
        rollout_versions(_Registry(), "m", "off")
    assert rollout_versions(_Registry(champion="1"), "m", "off") == {"champion": "1"}
    for registry in (_Registry(champion="1"), _Registry(champion="1", challenger="1")):
        with pytest.raises(PipelineError, match="needs a challenger other than the champion"):
            rollout_versions(registry, "m", "shadow")
    found = rollout_versions(_Registry(champion="1", challenger="2"), "m", "canary")
    assert found == {"champion": "1", "challenger": "2"}


def test_a_row_without_a_key_is_keyed_by_its_values_alone():
    from mlpipeline.serve.router import row_keys

    ints = pd.DataFrame({"a": [55, 3], "kind": ["low", "high"]})
    floats = pd.DataFrame({"a": [55.0, 3.0], "kind": ["low", "high"]}, index=[7, 9])
    assert row_keys(ints) == row_keys(floats) == ["55.0\x1flow", "3.0\x1fhigh"]
    missing = pd.DataFrame({"a": pd.array([None], dtype="Float64"), "kind": [None]})
    assert row_keys(missing) == ["nan\x1fNone"]
