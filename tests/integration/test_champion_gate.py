"""The champion gate, rollback and lineage on a real registry, through ``dvc repro``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import run, set_params

pytestmark = pytest.mark.integration

NAME = "diamonds-price"


@pytest.fixture(scope="module")
def registry_repo(pipeline, tmp_path_factory) -> Path:
    """A copy of the pipeline repository, its registry included (v1, the champion)."""
    repo = tmp_path_factory.mktemp("registry") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    return repo


def client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def champion(repo: Path) -> str:
    return str(client(repo).get_model_version_by_alias(NAME, "champion").version)


def decision(repo: Path) -> dict:
    return json.loads((repo / "reports" / "package.json").read_text())


def registry(repo: Path, *args: str) -> str:
    return run(["python", "-m", "mlpipeline", "registry", *args], repo).stdout


def test_the_first_model_is_champion_with_its_lineage(registry_repo):
    first = decision(registry_repo)
    assert first["promote"] and first["version"] == 1 and champion(registry_repo) == "1"
    assert "first model to meet the thresholds" in first["reason"]
    card = (registry_repo / "reports" / "model_card.md").read_text()
    assert "# Model card: diamonds-price\n" in card and "## Known limits" in card
    assert "v1" not in card and "train run" not in card and "runs:/" not in card
    version = client(registry_repo).get_model_version(NAME, "1")
    # the card, its plots served from the package run's artifacts by the MLflow UI
    served = card.replace("](plots/", f"](get-artifact?run_uuid={version.run_id}&path=plots/")
    assert "](plots/predictions.png)" in card and served != card
    described = version.description  # within the registry's 5,000 characters
    assert "## Registry: version 1" in described and len(described) <= 5000
    headings = [line for line in served.splitlines() if line.startswith(("# ", "## ", "!["))]
    assert all(line in described for line in headings)  # every section, every plot
    lineage = json.loads(registry(registry_repo, "lineage"))
    commits = run(["git", "rev-list", "HEAD"], registry_repo).stdout.split()
    assert lineage["git_commit"] in commits  # the commit the pipeline ran on
    lock = yaml.safe_load((registry_repo / "dvc.lock").read_text())["stages"]
    outs = {o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])}
    assert lineage["data"]["data.raw.md5"] == outs["data/raw/data.parquet"]
    assert lineage["data"]["data.features.md5"] == outs["data/features"]
    assert lineage["data"]["model.lgbm.md5"] == outs["models/lgbm"]
    assert len(lineage["data"]["params.sha256"]) == 64
    train = client(registry_repo).get_run(lineage["train_run_id"])
    assert train.data.tags["pipeline.stage"] == "train"
    assert train.data.tags["git.commit"] == lineage["git_commit"]
    assert lineage["validation_report"].startswith("runs:/")
    assert lineage["restore"] == [f"git checkout {lineage['git_commit']}", "dvc checkout"]


def test_a_model_that_is_not_better_does_not_replace_the_champion(registry_repo):
    run(["dvc", "repro", "-f", "package"], registry_repo)  # the same model again: v2
    second = decision(registry_repo)
    assert second["version"] == 2 and not second["promote"]
    assert "not better by the 0.50% margin" in second["reason"]
    assert champion(registry_repo) == "1"
    assert str(client(registry_repo).get_model_version_by_alias(NAME, "challenger").version) == "2"
    shown = run(["dvc", "metrics", "show", "--json"], registry_repo).stdout
    assert '"promote": false' in shown


def test_a_worse_model_does_not_replace_the_champion(registry_repo):
    set_params(registry_repo, lambda p: p["train"]["search"].update(max_rounds=15))
    run(["dvc", "repro"], registry_repo)
    worse = decision(registry_repo)
    assert worse["version"] == 3 and not worse["promote"]
    assert worse["challenger"] > worse["champion"]  # RMSE: higher is worse
    assert champion(registry_repo) == "1"


def test_a_better_model_replaces_the_champion_and_rollback_restores_it(registry_repo):
    # v1 is already about as good as this data allows, so the weak v3 (15 rounds) is made
    # champion by hand first: a full search must then beat it
    registry(registry_repo, "promote", "--version", "3")
    assert champion(registry_repo) == "3"
    set_params(registry_repo, lambda p: p["train"]["search"].update(max_rounds=1000, n_calls=4))
    run(["dvc", "repro"], registry_repo)
    better = decision(registry_repo)
    assert better["promote"], better["reason"]
    assert better["challenger"] < better["champion"] and champion(registry_repo) == "4"
    registry(registry_repo, "rollback")
    assert champion(registry_repo) == "3"
    registry(registry_repo, "promote", "--version", "4")
    assert champion(registry_repo) == "4"
    registry(registry_repo, "rollback", "--to", "2")
    assert champion(registry_repo) == "2"


def test_batch_scoring_uses_the_champion_and_validates_first(registry_repo, tmp_path):
    import pandas as pd

    rows = pd.read_parquet(registry_repo / "data/raw/data.parquet").sample(300, random_state=1)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "scored.parquet"
    predict = ["python", "-m", "mlpipeline", "predict", "--input", str(tmp_path / "rows.csv")]
    run([*predict, "--output", str(out)], registry_repo)
    scored = pd.read_parquet(out)
    assert len(scored) == 300 and scored["prediction"].between(100, 50000).all()
    assert list(scored.columns[:-1]) == list(rows.columns)  # the target column is kept
    broken = rows.drop(columns=["carat"])
    broken.to_csv(tmp_path / "broken.csv", index=False)
    done = run(
        [
            "python",
            "-m",
            "mlpipeline",
            "predict",
            "--input",
            str(tmp_path / "broken.csv"),
            "--output",
            str(tmp_path / "never.parquet"),
        ],
        registry_repo,
        check=False,
    )
    assert done.returncode == 2 and "carat" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "never.parquet").exists()


def test_a_dockerfile_is_generated_for_the_champion(registry_repo, tmp_path):
    out = tmp_path / "docker"
    run(
        [
            "mlflow",
            "models",
            "generate-dockerfile",
            "-m",
            f"models:/{NAME}@champion",
            "-d",
            str(out),
        ],
        registry_repo,
        extra_env={"MLFLOW_TRACKING_URI": f"sqlite:///{registry_repo / 'mlflow.db'}"},
    )
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY model_dir /opt/ml/model" in dockerfile and "ENTRYPOINT" in dockerfile
    assert (out / "model_dir" / "code" / "pipeline_features.py").exists()
    signature = yaml.safe_load((out / "model_dir" / "MLmodel").read_text())["signature"]
    assert signature["inputs"] is None  # MLflow's column checks would drop unexpected columns
    assert json.loads(signature["params"])[0]["name"] == "explain"  # only the params schema


def test_a_champion_from_another_split_is_not_compared_and_the_decision_says_why(registry_repo):
    """The champion may have trained on the new held-out rows: the thresholds and
    package.gate.on_lineage_change decide, and the decision names what changed."""
    before = champion(registry_repo)
    set_params(registry_repo, lambda p: p["featurize"].update(test_size=0.25))
    run(["dvc", "repro"], registry_repo)
    moved = decision(registry_repo)
    assert moved["promote"] and not moved["comparable"], moved
    assert moved["champion"] is None and moved["champion_version"] == before
    assert "test_size 0.2 -> 0.25" in moved["lineage"]
    assert "promoted by package.gate.on_lineage_change" in moved["reason"]
    assert champion(registry_repo) == str(moved["version"])
    tags = client(registry_repo).get_model_version(NAME, str(moved["version"])).tags
    assert tags["gate.comparable"] == "False"

    def keep(p: dict) -> None:
        p["seed"] = 7
        p["package"]["gate"]["on_lineage_change"] = "keep"

    set_params(registry_repo, keep)
    run(["dvc", "repro"], registry_repo)
    kept = decision(registry_repo)
    assert not kept["promote"] and not kept["comparable"]
    assert (
        "seed 42 -> 7" in kept["lineage"]
        and "kept by package.gate.on_lineage_change" in kept["reason"]
    )
    assert f"promote --version {kept['version']}" in kept["reason"]
    assert champion(registry_repo) == str(moved["version"])
