"""Warm starts read an earlier search's trials from git: a DVC experiment name or a revision;
a source of another data version, scoring or set of dimensions is refused with the reason;
trials outside the current bounds are left out; the checkpoint key follows the warm start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mlpipeline.core.config import Params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import dvc_md5
from mlpipeline.model.training import open_checkpoint
from mlpipeline.model.warmstart import KEY, load_warm_start
from tests.helpers import make_params

HISTORY = """trial,score,best_score,score_std,best_iteration,num_leaves
0,0.20,0.20,0.01,30,9
1,0.15,0.15,0.01,40,20
2,0.18,0.15,0.01,35,30
"""


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
    done = subprocess.run(
        ["git", *ident, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def tree(**search) -> dict:
    params = make_params("data.csv", "price", ["carat"])
    params["train"]["search"].update(search)
    return params


def commit_run(repo: Path, history: str, params: dict, message: str) -> str:
    """A pipeline run as committed: params, dvc.lock (train's dep on the features) and the
    search history."""
    lock = {
        "schema": "2.0",
        "stages": {
            "train": {
                "deps": [{"path": "data/features", "md5": dvc_md5(repo / "data/features")}],
                "outs": [{"path": "models/lgbm"}, {"path": "reports/plots"}],
            }
        },
    }
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "reports/plots").mkdir(parents=True, exist_ok=True)
    (repo / "reports/plots/search.csv").write_text(history)
    git(repo, "add", "dvc.lock", "params.yaml", "reports")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with one committed run (branch ``main``) and a DVC experiment of it
    (``refs/exps/...``, named ``exp-wide``) whose trials differ."""
    (tmp_path / "data/features").mkdir(parents=True)
    (tmp_path / "data/features/train.parquet").write_bytes(b"features v1")
    git(tmp_path, "init", "-q", "-b", "main")
    baseline = commit_run(tmp_path, HISTORY, tree(), "run")
    experiment = commit_run(tmp_path, HISTORY.replace(",9\n", ",12\n"), tree(), "experiment")
    git(tmp_path, "reset", "-q", "--hard", baseline)
    git(tmp_path, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/exp-wide", experiment)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def params(source: str | None, **search) -> Params:
    return Params.model_validate(tree(warm_start=source, **search))


def test_a_dvc_experiment_name_is_read_from_its_commit(repo):
    warm = load_warm_start(params("exp-wide"), Path("data/features"))
    experiment = git(repo, "for-each-ref", "--format=%(objectname)", "refs/exps")
    assert warm is not None and warm.source == f"exp-wide@{experiment}"
    assert [p["num_leaves"] for p in warm.points] == [12, 20, 30]
    assert warm.scores == [0.20, 0.15, 0.18]


def test_a_git_revision_is_read_and_a_cold_start_reads_nothing(repo):
    warm = load_warm_start(params("main"), Path("data/features"))
    assert warm is not None and [p["num_leaves"] for p in warm.points] == [9, 20, 30]
    assert isinstance(warm.points[0]["num_leaves"], int)
    assert load_warm_start(params(None), Path("data/features")) is None


def test_an_unknown_source_names_the_key(repo):
    with pytest.raises(PipelineError, match=f"{KEY}: 'nope' is neither a DVC experiment"):
        load_warm_start(params("nope"), Path("data/features"))


def test_another_data_version_is_refused(repo):
    (repo / "data/features/train.parquet").write_bytes(b"features v2")
    with pytest.raises(PipelineError, match="another data version"):
        load_warm_start(params("main"), Path("data/features"))


def test_another_set_of_dimensions_is_refused(repo):
    space = {
        "num_leaves": {"type": "integer", "low": 7, "high": 31},
        "learning_rate": {"type": "real", "low": 0.01, "high": 0.3},
    }
    with pytest.raises(PipelineError, match=r"searched other dimensions.*learning_rate"):
        load_warm_start(params("main", space=space), Path("data/features"))


def test_another_scoring_is_refused(repo):
    with pytest.raises(PipelineError, match=r"search metric rmse \(here l1\)"):
        load_warm_start(params("main", metric="l1"), Path("data/features"))


def test_trials_outside_the_bounds_are_left_out_and_none_left_is_refused(repo):
    narrow = {"num_leaves": {"type": "integer", "low": 10, "high": 31}}
    warm = load_warm_start(params("main", space=narrow), Path("data/features"))
    assert warm is not None and [p["num_leaves"] for p in warm.points] == [20, 30]
    none = {"num_leaves": {"type": "integer", "low": 40, "high": 60}}
    with pytest.raises(PipelineError, match="none of the 3 trials"):
        load_warm_start(params("main", space=none), Path("data/features"))


def test_the_checkpoint_key_follows_the_warm_start(repo):
    folder = repo / "checkpoints"
    cold = open_checkpoint(folder, params(None), Path("data/features"))
    main = open_checkpoint(folder, params("main"), Path("data/features"))
    experiment = open_checkpoint(folder, params("exp-wide"), Path("data/features"))
    assert cold.warm is None and main.warm is not None
    assert len({cold.path, main.path, experiment.path}) == 3
