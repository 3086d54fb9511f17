"""ci/pr_report.sh and ci/check_lock.py in a small DVC repository with a base and a PR commit."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import git_commit, run

pytestmark = pytest.mark.integration

STAGE = {
    "stages": {
        "train": {
            "cmd": "python train.py",
            "deps": ["train.py"],
            "params": ["train.lr", "train.trees"],
            "metrics": [{"metrics.json": {"cache": False}}],
            "plots": [{"history.csv": {"cache": False, "x": "step", "y": "loss"}}],
        }
    }
}
TRAIN = """import json, os, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
rmse = round(1.0 / (p["lr"] * p["trees"]), 4) + float(os.environ.get("NOISE", 0))
json.dump({"rmse": rmse, "trees": p["trees"]}, open("metrics.json", "w"))
rows = "".join(f"{i},{rmse * (5 - i)}\\n" for i in range(5))
open("history.csv", "w").write("step,loss\\n" + rows)
"""


def write_params(repo: Path, lr: float, trees: int = 10) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": lr, "trees": trees}}))


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    """A DVC repository: main with lr 0.1 reproduced; branch `change` with lr 0.2 reproduced."""
    repo = tmp_path / "small"
    repo.mkdir()
    shutil.copytree(REPO / "ci", repo / "ci")
    shutil.copytree(REPO / "mlpipeline", repo / "mlpipeline")  # `python -m mlpipeline plots`
    (repo / "dvc.yaml").write_text(yaml.safe_dump(STAGE, sort_keys=False))
    (repo / "train.py").write_text(TRAIN)
    write_params(repo, 0.1)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "repro"], repo)
    git_commit(repo, "base")
    run(["git", "checkout", "-q", "-b", "change"], repo)
    write_params(repo, 0.2)
    run(["dvc", "repro"], repo)
    git_commit(repo, "faster learning")
    return repo


def test_the_report_has_the_params_and_metrics_tables_with_the_changes(small_repo):
    run(["bash", "ci/pr_report.sh", "main", "report.md", "plots"], small_repo)
    report = (small_repo / "report.md").read_text()
    assert "## Pipeline report: this branch vs `main`" in report
    tables = re.sub(r" +", " ", report)
    params = tables[tables.index("### Params") : tables.index("### Metrics")]
    assert "| Path | Param | main | workspace |" in params
    assert "| params.yaml | train.lr | 0.1 | 0.2 |" in params
    metrics = tables[tables.index("### Metrics") : tables.index("### Plots")]
    assert "| metrics.json | rmse | 1.0 | 0.5 |" in metrics
    assert "trees" not in metrics  # unchanged values stay out
    assert "- plots/history.png" in report
    png = (small_repo / "plots" / "plots" / "history.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")  # rendered by the pinned vl-convert
    page = (small_repo / "plots" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page and "vegaEmbed" in page  # the libraries inlined


def test_a_stale_lock_fails_the_check_and_names_the_stage(small_repo):
    check = ["python", "ci/check_lock.py", "--rev", "HEAD"]
    assert run(check, small_repo, check=False).returncode == 0  # reproduced and committed
    write_params(small_repo, 0.4)
    git_commit(small_repo, "params changed, dvc repro not run")  # the stale lock
    run(["dvc", "repro"], small_repo)
    done = run(check, small_repo, check=False)
    assert done.returncode == 1
    assert "  train:\n" in done.stderr and "param params.yaml:train.lr (0.2 -> 0.4)" in done.stderr
    assert "out metrics.json: rmse: 0.5 -> 0.25" in done.stderr
    assert json.loads((small_repo / "metrics.json").read_text())["rmse"] == 0.25


def test_float_noise_within_the_tolerance_passes_and_beyond_it_names_key_and_values(small_repo):
    """Another machine's last-bit noise changes the output's hash, not its verdict."""
    check = ["python", "ci/check_lock.py", "--rev", "HEAD"]
    run(["dvc", "repro", "-f"], small_repo, extra_env={"NOISE": "1e-13"})
    done = run(check, small_repo, check=False)
    assert done.returncode == 0, done.stderr
    assert "metrics.json differs from HEAD only within the tolerance" in done.stderr
    run(["dvc", "repro", "-f"], small_repo, extra_env={"NOISE": "1e-3"})
    done = run(check, small_repo, check=False)
    assert done.returncode == 1
    assert "out metrics.json: rmse: 0.5 -> 0.501" in done.stderr
    assert "out history.csv: row 0 column loss: 2.5 -> 2.505" in done.stderr
