"""Each stage's code dependencies, from the source: its import closure inside the repository,
and the ``dvc.yaml`` lists rewritten with the rest of the file as it was."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from mlpipeline.commands import deps
from mlpipeline.core.codedeps import closure, is_code_path, listed_code, stage_code, with_code
from mlpipeline.core.errors import PipelineError


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "stages/__init__.py": "",
            "stages/fit.py": """\
                from mlpipeline import cli
                from mlpipeline.engine.fit import open_engine
                import numpy
                """,
            "mlpipeline/__init__.py": "",
            "mlpipeline/cli.py": "from mlpipeline.errors import PipelineError\n",
            "mlpipeline/errors.py": "",
            "mlpipeline/engine/__init__.py": "",
            "mlpipeline/engine/fit.py": """\
                from pathlib import Path
                SHIPPED = Path(__file__).with_name("serving.py")
                def open_engine():
                    from mlpipeline.dask.fit import DaskFit  # the Dask path counts too
                """,
            "mlpipeline/engine/serving.py": "import mlpipeline.model\n",
            "mlpipeline/model.py": "",
            "mlpipeline/dask/__init__.py": "",
            "mlpipeline/dask/fit.py": "",
            "mlpipeline/monitor.py": "from mlpipeline import cli\n",  # nobody imports it
        },
    )


def test_the_closure_follows_function_imports_packages_and_shipped_code(repo):
    assert stage_code(repo, "fit") == [
        "stages/fit.py",
        "mlpipeline/__init__.py",
        "mlpipeline/cli.py",
        "mlpipeline/dask/__init__.py",
        "mlpipeline/dask/fit.py",  # imported inside a function: the Dask path
        "mlpipeline/engine/__init__.py",
        "mlpipeline/engine/fit.py",
        "mlpipeline/engine/serving.py",  # shipped by name, with what it imports
        "mlpipeline/errors.py",
        "mlpipeline/model.py",
        "stages/__init__.py",
    ]  # not mlpipeline/monitor.py: no stage imports it


def test_the_closure_of_a_module_without_repository_imports_is_its_packages(repo):
    assert closure(repo, "mlpipeline.model") == ["mlpipeline/__init__.py", "mlpipeline/model.py"]


DVC_YAML = """\
stages:
  fit:   # the model
    cmd: python -m stages.fit
    deps:
      - stages/fit.py
      - mlpipeline
      - data/features   # the features
      - ${dataset.source}
    outs:
      - models/x
  report:
    cmd: python -m stages.report
    deps:
      - data/features
"""


def test_writing_the_lists_replaces_code_deps_only_and_keeps_the_rest(repo):
    code = stage_code(repo, "fit")
    written = with_code(DVC_YAML, "fit", code)
    stage = yaml.safe_load(written)["stages"]["fit"]
    assert stage["deps"] == [*code, "data/features", "${dataset.source}"]
    assert "# the features" in written and "  fit:   # the model" in written
    assert (
        yaml.safe_load(written)["stages"]["report"] == yaml.safe_load(DVC_YAML)["stages"]["report"]
    )
    assert listed_code(written, "fit") == code
    assert with_code(written, "fit", code) == written


def test_code_paths_are_the_repositorys_packages_and_modules():
    assert is_code_path("mlpipeline") and is_code_path("stages/train.py")
    assert is_code_path("mlpipeline/dask/cluster.py")
    assert not is_code_path("data/raw/data.parquet") and not is_code_path("${dataset.source}")
    assert not is_code_path("expectations/raw.json")


def test_the_command_reports_stale_lists_then_writes_them(repo, capsys):
    (repo / "dvc.yaml").write_text(DVC_YAML)
    path = str(repo / "dvc.yaml")
    assert deps.main(["--dvc-yaml", path]) == 1
    err = capsys.readouterr().err
    assert (
        "fit: missing" in err
        and "mlpipeline/dask/fit.py" in err
        and "not imported mlpipeline" in err
    )
    assert deps.main(["--dvc-yaml", path, "--write"]) == 0
    assert deps.main(["--dvc-yaml", path]) == 0
    assert listed_code((repo / "dvc.yaml").read_text(), "fit") == stage_code(repo, "fit")


def test_a_stage_without_deps_is_named():
    with pytest.raises(PipelineError, match="stage 'fit' has no deps list"):
        listed_code("stages:\n  fit:\n    cmd: x\n", "fit")
