"""Every command in the README and docs/ runs as written.

The README's quickstart and "bring your own data" commands are run here, literally, in a
copy of the repository. Every other documented command (```bash blocks; ```text blocks hold
usage synopses and are not run) must match an entry of ``COVERED``, which names the test that
runs it: a command nobody runs fails this test until a test is named for it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import git_commit, run

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^ *```bash\n(.*?)^ *```", re.S | re.M)

# documented command (a regular expression) -> the test that runs it
COVERED = {
    r"python3\.11 -m venv \.venv .*": ".ci/run (a fresh virtual environment)",
    r"pip install -r requirements\.txt": ".ci/run (a fresh virtual environment)",
    r"pytest( -m \"not integration\")?": ".ci/run",
    r"dvc repro": "tests/integration/conftest.py::pipeline",
    r"dvc repro ingest": "tests/integration/test_docs.py::test_the_readme_commands_run_as_written",
    r"python -m mlpipeline build-suite .*": "tests/integration/test_pipeline.py::"
    "test_rebuilding_the_suites_reproduces_the_committed_files",
    r"python ci/check_lock\.py --rev HEAD": "tests/integration/test_ci_report.py::"
    "test_a_stale_lock_fails_the_check_and_names_the_stage",
    r"bash ci/pr_report\.sh main report\.md plots": "tests/integration/test_ci_report.py::"
    "test_the_report_has_the_params_and_metrics_tables_with_the_changes",
    r"dvc exp run -S train\.search\.n_calls=8": "tests/integration/test_pipeline.py::"
    "test_experiment_runs_and_shows_its_metrics",
    r"dvc exp run -n (small|narrow) -S train\.search\..*|python -m mlpipeline analyze": "tests/"
    "integration/test_analyze_command.py::test_two_experiments_a_warm_start_and_their_analysis",
    r"dvc exp run .*--queue.*|dvc queue (start|status|logs).*": "tests/integration/"
    "test_experiments.py::test_queued_experiments_on_a_fresh_clone_with_two_workers_land_in_"
    "one_store",
    r"dvc exp (show|apply) .*|dvc (metrics|plots) diff": "tests/integration/test_pipeline.py::"
    "test_experiment_runs_and_shows_its_metrics",
    r"export MLFLOW_TRACKING_URI=.*": "tests/integration/test_tracking_server.py::"
    "test_every_stage_trial_and_the_model_land_on_the_server",
    r"mlflow run \. .*": "tests/integration/test_experiments.py::"
    "test_mlflow_run_runs_the_pipeline_as_an_experiment",
    r"python -m mlpipeline experiment .*": "tests/integration/test_docs.py::"
    "test_the_experiment_command_runs_dvc_exp_run",
    r"python -m benchmarks.*": "tests/integration/test_docs.py::test_the_benchmarks_start",
    r"dvc exp run -S engine=dask|DASK_SCHEDULER_ADDRESS=.* dvc repro": "tests/integration/"
    "test_dask_engine.py::test_metrics_within_tolerance",
    r"dvc remote (add|modify) .*|dvc push": "tests/integration/test_s3_remote.py::"
    "test_push_from_one_clone_and_pull_into_another",
    r"pip install psycopg2-binary boto3|export (AWS_|MLFLOW_S3_).*|mlflow server .*": "tests/"
    "integration/test_team_server.py::"
    "test_four_experiments_from_two_clones_at_once_all_land_on_the_server",
    r"python -m mlpipeline server --postgres --s3 --home .*": "tests/integration/"
    "test_team_server.py::test_four_experiments_from_two_clones_at_once_all_land_on_the_server",
    r"python -m mlpipeline rollout build --mode (shadow|off)": "tests/integration/"
    "test_rollout_serving.py::test_shadow_answers_with_the_champion_and_logs_both_versions",
    r"python -m mlpipeline rollout build --mode canary --share [0-9.]+": "tests/integration/"
    "test_rollout_serving.py::test_canary_answers_thirty_percent_of_keys_with_the_challenger_and_a_key_"
    "keeps_its_model",
    r"mlflow models serve -m models:/diamonds-price-router@live .*": "tests/integration/"
    "test_rollout_serving.py::test_shadow_answers_with_the_champion_and_logs_both_versions",
    r"python -m mlpipeline rollout-report .*|python -m mlpipeline registry (promote|rollback) "
    r"--from-report .*": "tests/integration/test_rollout_serving.py::"
    "test_the_report_with_outcomes_rolls_the_weaker_challenger_back",
    r"mlflow models serve .*|curl .*": "tests/integration/test_serving.py::"
    "test_split_records_and_csv_bodies_give_the_same_predictions",
    r"mlflow models (generate-dockerfile|build-docker) .*|docker run .*": "tests/integration/"
    "test_champion_gate.py::test_a_dockerfile_is_generated_for_the_champion",
    r"python -m mlpipeline predict .*": "tests/integration/test_champion_gate.py::"
    "test_batch_scoring_uses_the_champion_and_validates_first",
    r"mlflow ui .*": "tests/integration/test_docs.py::test_the_mlflow_ui_serves_the_store",
    r"python -m mlpipeline registry .*": "tests/integration/test_champion_gate.py::"
    "test_a_better_model_replaces_the_champion_and_rollback_restores_it",
    r"python -m mlpipeline monitor .*": "tests/integration/test_pipeline.py::"
    "test_monitor_passes_a_random_sample",
    r"python -m mlpipeline init .*": "tests/integration/test_docs.py::"
    "test_the_readme_commands_run_as_written",
    r"dvc status|dvc checkout|git checkout <rev>|git add -A && git commit .*": "tests/"
    "integration/test_data_versions.py::test_a_local_csv_edited_in_place_is_a_new_version_and_"
    "the_old_one_comes_back",
    r"dvc update .*": "tests/integration/test_data_versions.py::"
    "test_an_s3_object_overwritten_is_fetched_by_dvc_update_and_named_by_its_etag",
    r"python -m mlpipeline plots": "tests/integration/test_browser.py::"
    "test_dvc_plots_page_renders_offline",
    r"python -m mlpipeline plots --rev main --out pr_plots": "tests/integration/"
    "test_ci_report.py::test_the_report_has_the_params_and_metrics_tables_with_the_changes",
}


def documented_commands(path: Path) -> list[str]:
    """The commands of a page's ```bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in BLOCK.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith(("#", "{", '"', "[")) and not line.endswith("}}'"):
                commands.append(" ".join(line.split()))
    return commands


def covering(command: str) -> str | None:
    return next((t for p, t in COVERED.items() if re.fullmatch(p, command)), None)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_documented_command_is_run_by_a_named_test(page):
    uncovered = [c for c in documented_commands(page) if covering(c) is None]
    assert uncovered == [], f"{page.name}: no test runs {uncovered}"


def test_the_tests_named_for_the_commands_exist():
    for target in set(COVERED.values()):
        path, _, name = target.partition("::")
        path = path.split(" ")[0]
        assert (REPO / path).exists(), target
        if name:
            assert re.search(rf"def {name}\b", (REPO / path).read_text()), target


def test_the_readme_commands_run_as_written(tmp_path):
    """The quickstart and "bring your own data", literally, in a fresh copy: ``dvc repro`` on
    the default data, then ``init`` on a table of houses and ``dvc repro`` again."""
    from tests.helpers import copy_repository, regression_table

    repo = copy_repository(tmp_path / "repo")
    git_commit(repo, "clone")
    houses = regression_table(rows=600).rename(columns={"y": "price", "kind": "district"})
    (repo / "data" / "external").mkdir(parents=True)
    houses.to_csv(repo / "data" / "external" / "houses.csv", index=False)
    for command in documented_commands(REPO / "README.md"):
        if command.startswith(("python3.11 -m venv", "pip install", "pytest")):
            continue  # .ci/run does these in a fresh virtual environment
        done = run(shlex.split(command), repo, check=False)
        assert done.returncode == 0, f"{command}:\n{done.stderr[-2000:]}"
    assert (repo / "models" / "pyfunc" / "MLmodel").exists()
    assert "houses-price" in (repo / "params.yaml").read_text()


def test_the_experiment_command_runs_dvc_exp_run(pipeline):
    command = ["python", "-m", "mlpipeline", "experiment", "--queue", "train.search.n_calls=2"]
    run(command, pipeline)
    assert "Queued" in run(["dvc", "queue", "status"], pipeline).stdout
    run(["dvc", "queue", "remove", "--all"], pipeline)


@pytest.mark.parametrize(
    "module",
    [
        "benchmarks",
        "benchmarks.search",
        "benchmarks.serving",
        "benchmarks.validate",
        "benchmarks.team_server",
    ],
)
def test_the_benchmarks_start(module, pipeline):
    """Each documented benchmark parses its options (running them takes minutes to hours)."""
    done = run(["python", "-m", module, "--help"], pipeline, check=False)
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr


def test_the_scale_data_benchmark_writes_a_table(pipeline, tmp_path):
    command = ["python", "-m", "benchmarks.scale_data", "--rows", "5000", "--out", str(tmp_path)]
    run(command, pipeline)
    assert list(tmp_path.glob("*.parquet"))


def test_the_mlflow_ui_serves_the_store(pipeline):
    from tests.integration.conftest import local_server

    command = ["mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db", "-p", "{port}"]
    with local_server(command, "/health", pipeline) as url:
        assert url.startswith("http://127.0.0.1:")
