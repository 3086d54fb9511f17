"""The rollout router in-process: two packaged models (a trained one as champion and the same
booster cut to a few trees as challenger) behind one pyfunc, in each mode, with its log."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mlpipeline.core.config import RolloutParams
from mlpipeline.serve.live import read_log, to_challenger
from mlpipeline.serve.rollout import member_files, router_kwargs, router_settings
from tests.model.test_behaviour import trained

INPUTS = ["size", "grade", "noise"]
VERSIONS = {"champion": "1", "challenger": "2"}


def weaker_copy(model_dir: Path, dest: Path) -> Path:
    """The packaged model with its booster cut to 3 trees: other predictions, same inputs."""
    import lightgbm as lgb

    shutil.copytree(model_dir, dest)
    booster = member_files(dest)["booster"]
    booster.write_text(lgb.Booster(model_file=str(booster)).model_to_string(num_iteration=3))
    return dest


@pytest.fixture(scope="module", params=["regression", "binary"])
def members(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    champion, test, _ = trained(tmp, request.param)
    challenger_dir = weaker_copy(tmp / "pyfunc", tmp / "weaker")
    rows = test[INPUTS].reset_index(drop=True)
    return {
        "dirs": {"champion": tmp / "pyfunc", "challenger": challenger_dir},
        "champion": champion,
        "challenger": mlflow.pyfunc.load_model(str(challenger_dir)),
        "rows": rows.astype({"grade": object}),
    }


def router(members, tmp: Path, dirs: dict | None = None, **settings):
    rollout = RolloutParams(log_dir=str(tmp / "log"), **settings)
    versions = VERSIONS if rollout.mode != "off" else {"champion": "1"}
    dirs = dirs or members["dirs"]
    kwargs = router_kwargs(
        {role: dirs[role] for role in versions},
        router_settings(rollout, versions),
        tmp / "scratch",
    )
    mlflow.pyfunc.save_model(str(tmp / "router"), **kwargs)
    return mlflow.pyfunc.load_model(str(tmp / "router"))


def logged(model, tmp: Path) -> list[dict]:
    assert model.unwrap_python_model()._log.flush()
    return read_log(tmp / "log").records


def as_rows(output) -> list:
    if isinstance(output, pd.DataFrame):
        return output.to_dict("records")
    return np.asarray(output, dtype=float).tolist()


def same(found: list, expected: list) -> bool:
    """Logged outputs (JSON) are the model's: numbers, or class and probabilities."""
    if expected and isinstance(expected[0], dict):
        flat = [[v for v in row.values() if isinstance(v, float)] for row in found]
        want = [[v for v in row.values() if isinstance(v, float)] for row in expected]
        labels = [r["prediction"] for r in found] == [r["prediction"] for r in expected]
        return labels and np.allclose(flat, want, rtol=1e-12)
    return np.allclose(found, expected, rtol=1e-12)


def test_shadow_answers_as_the_champion_and_logs_both(members, tmp_path):
    model = router(members, tmp_path, mode="shadow")
    rows = members["rows"].head(40)
    keyed = rows.assign(request_id=[f"k{i}" for i in range(40)])
    answer = model.predict(keyed)
    champion, challenger = (as_rows(members[r].predict(rows)) for r in ("champion", "challenger"))
    assert as_rows(answer) == champion and champion != challenger
    records = logged(model, tmp_path)
    assert [r["request_id"] for r in records] == [f"k{i}" for i in range(40)]
    assert {r["answered_by"] for r in records} == {"1"} and {r["mode"] for r in records} == {
        "shadow"
    }
    assert same([r["outputs"]["1"] for r in records], champion)
    assert same([r["outputs"]["2"] for r in records], challenger)
    assert records[0]["inputs"]["grade"] == rows.loc[0, "grade"]


def test_canary_routes_each_key_to_one_model_every_time(members, tmp_path):
    model = router(members, tmp_path, mode="canary", canary_share=0.5)
    rows = members["rows"].head(60)
    keys = [f"user-{i}" for i in range(60)]
    expected = {r: as_rows(members[r].predict(rows)) for r in ("champion", "challenger")}
    picked = [to_challenger(k, 0.5, "2") for k in keys]
    assert 10 < sum(picked) < 50
    want = [expected["challenger" if p else "champion"][i] for i, p in enumerate(picked)]
    assert as_rows(model.predict(rows.assign(request_id=keys))) == want
    order = np.random.default_rng(0).permutation(60)  # the same keys again, shuffled
    again = as_rows(model.predict(rows.iloc[order].assign(request_id=[keys[i] for i in order])))
    assert again == [want[i] for i in order]
    records = logged(model, tmp_path)
    answered = {r["request_id"]: r["answered_by"] for r in records}
    assert [answered[k] for k in keys] == ["2" if p else "1" for p in picked]
    assert all(set(r["outputs"]) == {"1", "2"} for r in records)  # the other scored it too


def test_canary_without_a_key_column_routes_by_the_rows_values(members, tmp_path):
    model = router(members, tmp_path, mode="canary", canary_share=0.5)
    rows = members["rows"].head(60)
    first, second = as_rows(model.predict(rows)), as_rows(model.predict(rows.copy()))
    assert first == second
    champion = as_rows(members["champion"].predict(rows))
    assert 0 < sum(a != b for a, b in zip(first, champion, strict=True)) < 60
    assert len({r["request_id"] for r in logged(model, tmp_path)}) == 120  # ids made up


def test_rows_the_challenger_refuses_are_answered_by_the_champion(members, tmp_path):
    """A challenger whose own checks refuse a request (here: it takes at most 5 rows) does
    not fail the canary: the champion answers, and the log says why."""
    import json

    strict = tmp_path / "strict"
    shutil.copytree(members["dirs"]["challenger"], strict)
    meta_path = member_files(strict)["metadata"]
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "max_batch_rows": 5}))
    dirs = {"champion": members["dirs"]["champion"], "challenger": strict}
    model = router(members, tmp_path, dirs, mode="canary", canary_share=1.0)
    rows = members["rows"].head(8)
    assert as_rows(model.predict(rows)) == as_rows(members["champion"].predict(rows))
    assert as_rows(model.predict(rows.head(2))) == as_rows(
        members["challenger"].predict(rows.head(2))
    )
    records = logged(model, tmp_path)
    assert [r["answered_by"] for r in records] == ["1"] * 8 + ["2"] * 2
    assert all("more than 5" in r["errors"]["2"] for r in records[:8])
    assert all(r["outputs"]["2"] is None for r in records[:8])


def test_off_serves_the_champion_and_logs_hashes_when_asked(members, tmp_path):
    model = router(members, tmp_path, mode="off", log_inputs="hash")
    rows = members["rows"].head(5)
    assert as_rows(model.predict(rows)) == as_rows(members["champion"].predict(rows))
    records = logged(model, tmp_path)
    assert all(set(r["outputs"]) == {"1"} and r["challenger"] is None for r in records)
    assert all(len(r["inputs_sha256"]) == 64 and "inputs" not in r for r in records)


def test_a_bad_request_is_refused_as_the_packaged_model_refuses_it(members, tmp_path):
    model = router(members, tmp_path, mode="shadow")
    rows = members["rows"].head(3)
    for bad, reason in (
        (rows.drop(columns=["size"]), "missing column(s): ['size']"),
        (rows.assign(extra=1), "unexpected column(s): ['extra']"),
        (rows.assign(grade="astounding"), "not trained on"),
    ):
        with pytest.raises(MlflowException, match="invalid request") as raised:
            model.predict(bad)
        assert reason in raised.value.message
    assert logged(model, tmp_path) == []


def test_canary_explains_each_row_with_the_version_that_answered_it(members, tmp_path):
    model = router(members, tmp_path, mode="canary", canary_share=0.5)
    rows = members["rows"].head(40)
    keys = [f"user-{i}" for i in range(40)]
    explained = model.predict(rows.assign(request_id=keys), params={"explain": True})
    plain = model.predict(rows.assign(request_id=keys))
    if isinstance(plain, pd.DataFrame):  # the plain answer's columns come first, unchanged
        pd.testing.assert_frame_equal(explained[plain.columns], plain)
    else:
        np.testing.assert_array_equal(explained["prediction"].to_numpy(), plain)
    for role in ("champion", "challenger"):
        own = members[role].predict(rows, params={"explain": True})
        mine = [to_challenger(k, 0.5, "2") == (role == "challenger") for k in keys]
        pd.testing.assert_series_equal(
            explained.loc[mine, "raw_score"], own.loc[mine, "raw_score"], check_names=False
        )
    parts = [c for c in explained if c.startswith("contribution.")]
    np.testing.assert_allclose(explained[parts].sum(axis=1), explained["raw_score"], atol=1e-6)
    assert records_without_contributions(logged(model, tmp_path))
    with pytest.raises(MlflowException, match=r"params\.explain must be true or false"):
        model.predict(rows, params={"explain": None})


def records_without_contributions(records: list[dict]) -> bool:
    """The prediction log keeps the plain answers, never the explanations."""
    return bool(records) and not any("contribution" in json_text for json_text in map(str, records))
