"""The pull-request workflow and the CI helpers, checked without GitHub."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ci.check_lock import (
    csv_differences,
    differences,
    json_differences,
    last_digit,
    numbers_close,
    text_differences,
)
from mlpipeline.commands.experiment import command, overrides
from mlpipeline.core.errors import PipelineError
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


def test_the_workflow_passes_the_security_linter():
    """zizmor (pinned in requirements.txt) finds nothing of medium or high severity: no
    template expanded into a script, actions pinned by commit, no persisted credentials."""
    zizmor = Path(sys.executable).parent / "zizmor"
    done = subprocess.run(
        [str(zizmor), "--offline", "--min-severity", "medium", str(WORKFLOW.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actions_are_pinned_by_commit_with_the_version_beside(workflow):
    text = WORKFLOW.read_text()
    for step in _steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            assert re.search(re.escape(step["uses"]) + r"  # v\d", text), step["uses"]


def test_checks_out_full_history_and_caches_pip(workflow):
    steps = _steps(workflow)
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["persist-credentials"] is False
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["cache"] == "pip"
    assert python["with"]["python-version"] == "${{ matrix.python-version }}"


def test_tests_python_3_11_and_3_13_and_one_job_comments(workflow):
    job = workflow["jobs"]["reproduce"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.13"]
    commenting = [s for s in job["steps"] if "gh pr comment" in s.get("run", "")]
    assert [s.get("if") for s in commenting] == ["matrix.python-version == '3.11'"]


def test_the_requirements_resolve_for_python_3_11_to_3_13_from_one_file():
    """One requirements.txt for every supported Python: compiled --universal (markers where
    a version differs), and pyproject.toml allows exactly those versions."""
    header = (REPO / "requirements.txt").read_text().splitlines()[:2]
    assert "uv pip compile requirements.in --universal --python-version 3.11" in header[1]
    assert 'requires-python = ">=3.11,<3.14"' in (REPO / "pyproject.toml").read_text()


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
    assert "out data/features: aa.dir -> bb.dir" in found["featurize"]


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
    with pytest.raises(PipelineError, match="'n_calls' is not key=value"):
        overrides(["n_calls"])


@pytest.mark.parametrize(
    ("old", "new", "close"),
    [
        ("0.9834855662044267", "0.9834855662044268", True),  # the last bit
        ("0.0847575", "0.0847576", True),  # one unit in the sixth written digit
        ("0.0847575", "0.0847577", False),
        ("509.43093", "509.43094", True),  # within 1e-6 of the value
        ("509.431", "509.5", False),
        ("742", "743", False),
        ("nan", "nan", True),
    ],
)
def test_numbers_are_close_within_the_tolerance_or_the_written_precision(old, new, close):
    assert numbers_close(old, new, 1e-6) is close


def test_the_last_written_digit():
    assert last_digit("0.0847575") == pytest.approx(1e-7)
    assert last_digit("1.5e-05") == pytest.approx(1e-6)
    assert last_digit("742") == 0  # an integer: exact


def test_json_differences_name_the_key_and_both_values():
    old = {"test": {"r2": 0.9834855662044267, "rmse": 509.4}, "trials": 16}
    assert (
        list(
            json_differences(old, {**old, "test": {"r2": 0.9834855662044268, "rmse": 509.4}}, 1e-6)
        )
        == []
    )
    found = list(json_differences(old, {"test": {"r2": 0.97, "rmse": 509.41}, "trials": 17}, 1e-6))
    assert found == [
        "test.r2: 0.9834855662044267 -> 0.97",
        "test.rmse: 509.4 -> 509.41",  # JSON writes every digit: only the tolerance counts
        "trials: 16 -> 17",
    ]


def test_csv_differences_name_the_row_and_column():
    old = "trial,score,feature_set\n0,0.0847575,raw\n1,0.0843,geometry\n"
    assert list(csv_differences(old, old.replace("0.0847575", "0.0847576"), 1e-6)) == []
    found = list(
        csv_differences(old, old.replace("geometry", "raw").replace("0.0843", "0.09"), 1e-6)
    )
    assert found == [
        "row 1 column score: 0.0843 -> 0.09",
        "row 1 column feature_set: geometry -> raw",
    ]


def test_text_differences_compare_numbers_within_the_tolerance_and_words_exactly():
    old = "| rmse | 534.534 | 509.431 |\n**Gate:** kept\n"
    assert list(text_differences(old, old.replace("509.431", "509.432"), 1e-6)) == []
    found = list(text_differences(old, old.replace("kept", "promoted"), 1e-6))
    assert found == ["line 2: '**Gate:** kept' -> '**Gate:** promoted'"]
