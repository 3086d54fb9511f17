"""``python -m mlpipeline deps``: each stage's code dependencies in ``dvc.yaml``, checked or
written.

python -m mlpipeline deps [--write] [--dvc-yaml dvc.yaml]

A stage depends on exactly the repository files it imports (``mlpipeline.core.codedeps``), so that
editing a module reruns only the stages that run it. Without ``--write``: the stages whose
lists are out of date, with the files missing or extra; exit code 1 if any. ``--write``:
``dvc.yaml`` rewritten with the lists (its other lines as they are); then ``dvc status``
names the stages whose code changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core.codedeps import STAGE_FILE, listed_code, stage_code, with_code
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_text
from mlpipeline.data.sources import read_yaml


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline deps", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    return parser.parse_args(argv)


def code_stages(dvc_yaml: Path) -> list[str]:
    """The stages of ``dvc.yaml`` that run a ``stages/<name>.py`` module of the repository."""
    if not dvc_yaml.is_file():
        raise PipelineError(f"deps: {dvc_yaml} not found; run from the repository's root")
    stages = read_yaml(dvc_yaml).get("stages") or {}
    root = dvc_yaml.parent
    return [name for name in stages if (root / STAGE_FILE.format(name)).is_file()]


def differences(listed: list[str], wanted: list[str]) -> str:
    missing = [p for p in wanted if p not in listed]
    extra = [p for p in listed if p not in wanted]
    parts = [f"missing {', '.join(missing)}"] * bool(missing)
    parts += [f"not imported {', '.join(extra)}"] * bool(extra)
    return "; ".join(parts) or "the order differs"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    text = args.dvc_yaml.read_text() if args.dvc_yaml.is_file() else ""
    stale = []
    for stage in code_stages(args.dvc_yaml):
        wanted = stage_code(args.dvc_yaml.parent, stage)
        listed = listed_code(text, stage)
        if listed != wanted:
            stale.append(f"  {stage}: {differences(listed, wanted)}")
            text = with_code(text, stage, wanted)
    if args.write and stale:
        write_text(text, args.dvc_yaml)
    verb = "updated" if args.write else "out of date (python -m mlpipeline deps --write)"
    report = [f"deps: {args.dvc_yaml}'s code deps {verb}:", *stale] if stale else []
    print("\n".join(report) or f"deps: {args.dvc_yaml}'s code deps are up to date", file=sys.stderr)  # noqa: T201
    return 1 if stale and not args.write else 0
