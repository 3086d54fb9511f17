"""Two DVC experiments — the second warm-started from the first, in a narrower space — then
`python -m mlpipeline analyze`: the leaderboard has both (joined with their MLflow runs), the
sensitivity table and a plot for every search dimension, the robustness table and the reading,
all logged to MLflow as one analysis run; the model card has its section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.conftest import run, set_params

pytestmark = pytest.mark.integration

SMALL = ["dvc", "exp", "run", "-n", "small", "-S", "train.search.n_calls=8"]
NARROW = ["dvc", "exp", "run", "-n", "narrow", "-S", "train.search.space.num_leaves.high=63"]
NARROW += ["-S", "train.search.warm_start=small"]


@pytest.fixture(scope="module")
def workspace(pipeline, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("analysis") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)

    def light(p: dict) -> None:  # 2 configurations x 2 seeds: the shape, not the verdict
        p["analysis"].update(robustness_seeds=2, runners_up=1)

    set_params(repo, light)
    return repo


def store(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def train_run(repo: Path, exp_name: str):
    client = store(repo)
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        ids, filter_string=f"tags.`dvc.exp_name` = '{exp_name}' and tags.`pipeline.stage` = 'train'"
    )
    assert len(found) == 1, [r.info.run_id for r in found]
    return found[0]


def test_two_experiments_a_warm_start_and_their_analysis(workspace):
    run(SMALL, workspace)
    run(NARROW, workspace)
    warm = train_run(workspace, "narrow")
    assert warm.data.tags["search.warm_start"].startswith("small@")
    assert 1 <= warm.data.metrics["warm_start_trials"] <= 8  # those with num_leaves <= 63

    done = run(["python", "-m", "mlpipeline", "analyze"], workspace)
    out = workspace / "reports" / "analysis"
    board = pd.read_csv(out / "leaderboard.csv")
    found = dict(zip(board["experiment"], board["found in"], strict=True))
    assert found["small"] == found["narrow"] == "DVC + MLflow", found
    data = board.set_index("experiment")["data"]
    assert data["small"] == data["narrow"] == "this"
    assert board["cv score"].is_monotonic_increasing
    changed = board.set_index("experiment")["changed params"]
    assert "train.search.n_calls=8" in changed["small"]
    assert "train.search.warm_start=small" in changed["narrow"]

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    dims = set(params["train"]["search"]["space"])
    sensitivity = pd.read_csv(out / "sensitivity.csv")
    assert set(sensitivity["dimension"]) == dims and list(sensitivity["rank"]) == [1, 2, 3, 4, 5, 6]
    assert {p.name for p in out.glob("dependence_*.png")} == {f"dependence_{d}.png" for d in dims}
    robust = pd.read_csv(out / "robustness.csv")
    assert list(robust["config"]) == ["winner", "runner-up 1"]
    assert [c for c in robust.columns if c.startswith("seed ")] == ["seed 43", "seed 44"]
    report = (out / "analysis.md").read_text()
    reading = report.split("## Reading")[1].split("##")[0]
    assert reading.count("\n- ") >= 4, reading  # importance, feature sets, margin, robustness, gap
    assert "explain" in reading and "Under 2 other CV seeds" in reading
    assert "explain" in done.stderr  # the reading, printed

    client = store(workspace)
    ids = [e.experiment_id for e in client.search_experiments()]
    (analysis,) = client.search_runs(ids, filter_string="tags.`pipeline.role` = 'analysis'")
    artifacts = {a.path for a in client.list_artifacts(analysis.info.run_id, "analysis")}
    assert {
        "analysis/analysis.md",
        "analysis/leaderboard.csv",
        "analysis/robustness.png",
    } <= artifacts
    assert analysis.data.metrics["trials"] >= 8
    card = (workspace / "reports" / "model_card.md").read_text()
    assert "## Sensitivity and robustness" in card and "python -m mlpipeline analyze" in card
    # the workspace holds the last experiment: 8 calls (from the first), the narrower space
    assert json.loads((workspace / "reports" / "metrics.json").read_text())["trials"] == 8
