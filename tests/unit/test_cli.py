"""The command line's runner: expected errors become one line and an exit code; the process
ends through ``cli.finish``."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from mlpipeline.core import cli
from mlpipeline.core.errors import PipelineError


def test_an_expected_error_is_one_line_and_its_exit_code(capsys):
    def main(argv):
        raise PipelineError("params.yaml: train.search.n_calls must be at least 1")

    assert cli.run(main, []) == 1
    assert capsys.readouterr().err.strip() == (
        "error: params.yaml: train.search.n_calls must be at least 1"
    )


def test_finish_freezes_what_is_alive_and_exits_with_the_code(monkeypatch):
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as exit_:
        cli.finish(3)
    assert exit_.value.code == 3
    assert frozen == [True]


def test_a_stage_process_ends_with_main_s_exit_code_and_its_output_flushed(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ingest: [not, a, mapping\n")
    command = [sys.executable, "-m", "stages.ingest", "--params", str(params)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "raw.parquet"), "--meta", str(tmp_path / "m.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and str(params) in done.stderr
    assert "Traceback" not in done.stderr


def test_main_runs_with_fewer_collections_and_the_collector_is_restored_after():
    before = gc.get_threshold()
    seen = []
    assert cli.run(lambda argv: seen.append(gc.get_threshold()[0]), []) == 0
    assert seen == [cli.COLLECT_AFTER]
    assert gc.get_threshold() == before


def test_a_stage_turns_mlflow_telemetry_off_unless_the_environment_chose(monkeypatch):
    monkeypatch.delenv(cli.TELEMETRY_SWITCH, raising=False)
    cli.run(lambda argv: None, [])
    assert os.environ[cli.TELEMETRY_SWITCH] == "true"
    monkeypatch.setenv(cli.TELEMETRY_SWITCH, "false")
    cli.run(lambda argv: None, [])
    assert os.environ[cli.TELEMETRY_SWITCH] == "false"


# MLflow turns telemetry off by itself under pytest and CI; the child must not look like either.
CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL")
NO_CLIENT = """
from mlpipeline.core import cli

def main(argv):
    from mlflow.telemetry.client import get_telemetry_client
    print(get_telemetry_client() is None)

cli.run(main, [])
"""


def test_mlflow_imported_inside_main_starts_no_telemetry_client():
    hidden = {*CI_MARKERS, cli.TELEMETRY_SWITCH}
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    done = subprocess.run(
        [sys.executable, "-c", NO_CLIENT], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "True"
