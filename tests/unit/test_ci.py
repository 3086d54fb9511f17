"""The pull-request workflow and the CI helpers, checked without GitHub."""

from __future__ import annotations

import re

import pytest
import yaml

from ci.check_lock import differences
from stages.errors import StageError
from stages.experiment import command, overrides
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "pull-request.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_runs_on_pull_requests_with_the_permissions_it_needs(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_checks_out_full_history_and_caches_pip(workflow):
    steps = _steps(workflow)
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["cache"] == "pip" and python["with"]["python-version"] == "3.11"


def test_every_script_the_workflow_calls_exists(workflow):
    scripts = re.findall(r"\b(ci/[\w./-]+)", " ".join(s.get("run", "") for s in _steps(workflow)))
    assert {"ci/pr_report.sh", "ci/check_lock.py"} <= set(scripts)
    for script in scripts:
        assert (REPO / script).is_file(), script


def test_the_workflow_tests_reproduces_checks_reports_and_comments(workflow):
    runs = "\n".join(s.get("run", "") for s in _steps(workflow))
    for needed in ("pip install -r requirements.txt", "pytest", "dvc repro", "gh pr comment"):
        assert needed in runs
    assert runs.index("dvc repro") < runs.index("ci/check_lock.py") < runs.index("pr_report.sh")
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in _steps(workflow))


def _lock(test_size: float, features: str, model: str, pyfunc: str) -> dict:
    return {
        "stages": {
            "featurize": {
                "cmd": "python -m stages.featurize",
                "params": {"params.yaml": {"featurize": {"test_size": test_size}}},
                "outs": [{"path": "data/features", "md5": features}],
            },
            "package": {
                "cmd": "python -m stages.package",
                "deps": [{"path": "models/lgbm", "md5": model}],
                "outs": [{"path": "models/pyfunc", "md5": pyfunc}],
            },
        }
    }


def test_a_stale_lock_names_the_stage_and_what_changed():
    committed = _lock(0.2, "aa.dir", "m1", "p1")
    found = differences(committed, _lock(0.3, "bb.dir", "m1", "p1"), set())
    assert list(found) == ["featurize"]
    assert "param params.yaml:featurize.test_size (0.2 -> 0.3)" in found["featurize"]
    assert "out data/features (aa.dir -> bb.dir)" in found["featurize"]


def test_outputs_that_cannot_be_reproduced_are_left_out():
    committed = _lock(0.2, "aa.dir", "m1", "p1")
    assert differences(committed, _lock(0.2, "aa.dir", "m1", "p2"), {"models/pyfunc"}) == {}
    assert "package" in differences(committed, _lock(0.2, "aa.dir", "m1", "p2"), set())


def test_experiment_overrides_skip_empty_values():
    assert overrides(["train.search.n_calls=10", "seed=", "x.y= "]) == [
        "-S",
        "train.search.n_calls=10",
    ]
    assert command("sweep", True, ["seed=7"]) == [
        "dvc",
        "exp",
        "run",
        "-n",
        "sweep",
        "--queue",
        "-S",
        "seed=7",
    ]
    with pytest.raises(StageError, match="'n_calls' is not key=value"):
        overrides(["n_calls"])
