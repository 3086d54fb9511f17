"""The repository's shape is part of the test suite: ruff's lint rules and formatting, the
import layering (import-linter contracts in pyproject.toml), the five stages, and short
functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlpipeline.core.codedeps import listed_code, stage_code
from tests.conftest import REPO

BIN = Path(sys.executable).parent
STAGES = ["ingest", "validate", "featurize", "train", "package"]
MAX_FUNCTION_LINES = 40


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    done = subprocess.run([str(BIN / "ruff"), *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_import_layering_holds():
    """Stages use the library, never each other; the library never uses a stage; its layers
    only import downwards; no cycles. A deliberate stage-to-stage import fails here."""
    done = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pipeline_is_exactly_the_five_stages_in_order():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == STAGES
    modules = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__")
    assert modules == sorted(STAGES)


def test_each_stage_depends_on_exactly_the_code_it_imports():
    """Its module first, then its import closure (``python -m mlpipeline deps --write``)."""
    text = (REPO / "dvc.yaml").read_text()
    for name, stage in yaml.safe_load(text)["stages"].items():
        wanted = stage_code(REPO, name)
        listed = listed_code(text, name)
        missing = sorted(set(wanted) - set(listed))
        extra = sorted(set(listed) - set(wanted))
        assert not missing, f"{name} imports {missing}; run python -m mlpipeline deps --write"
        assert not extra, f"{name} does not import {extra}; run python -m mlpipeline deps --write"
        assert listed == wanted, name
        assert f"python -m stages.{name} " in stage["cmd"]
        params = stage.get("params", [])
        assert not any(str(p).startswith("runtime") for p in params), name


def _long_functions(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    return found


@pytest.mark.parametrize("folder", ["stages", "mlpipeline", "benchmarks"])
def test_no_function_is_longer_than_forty_lines(folder):
    assert _long_functions(REPO / folder) == []


def test_benchmarks_share_one_harness_instead_of_copies():
    """What every benchmark needs (timing, machine, versions, load, commit, argparse types) is
    defined once, in benchmarks/harness.py; a benchmark that defines its own copy fails."""
    shared = {
        node.name
        for node in ast.parse((REPO / "benchmarks/harness.py").read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    copies = [
        f"{path.name}: {node.name}"
        for path in sorted((REPO / "benchmarks").glob("*.py"))
        if path.name != "harness.py"
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in shared
    ]
    assert copies == []
