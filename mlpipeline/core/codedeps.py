"""Each stage's code dependencies: the repository files its import closure reaches.

A stage depends on ``stages/<name>.py`` and on every module of the repository it imports,
directly or through others, at module level or inside a function (the Dask path's imports
too: the stage runs them when ``engine: dask``), with the packages' ``__init__.py`` files
that importing them runs. A module that ships a sibling file as code (``Path(__file__)
.with_name("serving.py")``: the model's code, copied into the package) depends on it too.
Found from the source (``ast``), nothing is imported. ``python -m mlpipeline deps --write``
puts the lists into ``dvc.yaml``; a unit test fails when they are out of date.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mlpipeline.core.errors import PipelineError

PACKAGES = ("stages", "mlpipeline")  # the repository's own top-level packages
STAGE_FILE = "stages/{}.py"


def is_code_path(path: str) -> bool:
    """A ``dvc.yaml`` dependency that is the repository's code (not data, suites or params)."""
    return path.split("/", 1)[0] in PACKAGES and (path.endswith(".py") or "/" not in path)


def module_file(root: Path, module: str) -> Path | None:
    """The file of a repository module (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    if module.split(".", 1)[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(tree: ast.AST) -> set[str]:
    """Every absolute module an ``import`` or ``from ... import`` of the tree names, with the
    ``from`` names that may be submodules (``from mlpipeline.core import cli``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def shipped_files(tree: ast.AST) -> set[str]:
    """Sibling files named as ``Path(__file__).with_name("x.py")``."""
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "with_name"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).endswith(".py")
        and ast.unparse(node.func.value) == "Path(__file__)"
    }


def with_parents(root: Path, module: str) -> list[Path]:
    """A module's file and its packages' ``__init__.py`` files (importing it runs them)."""
    parts = module.split(".")
    files = [module_file(root, ".".join(parts[: n + 1])) for n in range(len(parts))]
    return [f for f in files if f is not None]


def closure(root: Path, module: str) -> list[str]:
    """The repository files importing ``module`` runs, relative to ``root``, sorted."""
    root = root.resolve()
    seen: set[Path] = set()
    todo = with_parents(root, module)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for module in imported_modules(tree):
            todo += with_parents(root, module)
        todo += [path.with_name(name) for name in shipped_files(tree)]
    return sorted(p.relative_to(root).as_posix() for p in seen)


def stage_code(root: Path, stage: str) -> list[str]:
    """What ``dvc.yaml`` lists as a stage's code: its module first, then its closure."""
    own = STAGE_FILE.format(stage)
    return [own, *(p for p in closure(root, f"stages.{stage}") if p != own)]


# ---- dvc.yaml, as text (its comments and layout kept) ----------------------------------------

STAGE_INDENT = "  "
ITEM_PREFIX = "      - "


def deps_block(lines: list[str], stage: str) -> tuple[int, int]:
    """``(first, end)``: the indices of a stage's ``deps:`` items in ``dvc.yaml``'s lines."""
    start = next((i for i, line in enumerate(lines) if _uncommented(line) == f"  {stage}:"), None)
    if start is None:
        raise PipelineError(f"dvc.yaml has no stage '{stage}'")
    stop = next((i for i in range(start + 1, len(lines)) if _is_stage_line(lines[i])), len(lines))
    deps = next((i for i in range(start, stop) if lines[i].strip() == "deps:"), None)
    if deps is None:
        raise PipelineError(f"dvc.yaml: stage '{stage}' has no deps list")
    end = deps + 1
    while end < stop and lines[end].startswith(ITEM_PREFIX):
        end += 1
    return deps + 1, end


def _uncommented(line: str) -> str:
    return line.split("#", 1)[0].rstrip()


def _is_stage_line(line: str) -> bool:
    return line.startswith(STAGE_INDENT) and not line.startswith(STAGE_INDENT + " ") and ":" in line


def item_path(line: str) -> str:
    """The path of a ``      - path  # comment`` line."""
    return line.removeprefix(ITEM_PREFIX).split("#", 1)[0].strip()


def listed_code(dvc_yaml: str, stage: str) -> list[str]:
    """The code dependencies a stage lists in ``dvc.yaml``, in order."""
    lines = dvc_yaml.splitlines(keepends=True)
    first, end = deps_block(lines, stage)
    return [item_path(line) for line in lines[first:end] if is_code_path(item_path(line))]


def with_code(dvc_yaml: str, stage: str, code: list[str]) -> str:
    """``dvc.yaml`` with the stage's code dependencies replaced by ``code``, first in its deps
    list; its other dependencies stay as they are, in their order."""
    lines = dvc_yaml.splitlines(keepends=True)
    first, end = deps_block(lines, stage)
    others = [line for line in lines[first:end] if not is_code_path(item_path(line))]
    written = [f"{ITEM_PREFIX}{path}\n" for path in code]
    return "".join([*lines[:first], *written, *others, *lines[end:]])
