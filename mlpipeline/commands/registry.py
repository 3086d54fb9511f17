"""``python -m mlpipeline registry``: what produced a version, rollback, promotion by hand.

python -m mlpipeline registry lineage [--alias champion | --version N]
python -m mlpipeline registry rollback [--to N]
python -m mlpipeline registry promote --version N
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlpipeline.config import load_params
from mlpipeline.errors import PipelineError
from mlpipeline.names import CHAMPION
from mlpipeline.registry import lineage, rollback, set_champion, version_by_alias
from mlpipeline.tracking import connect, repo_root


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline registry", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--name", help="registered model (default: package.model_name)")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("lineage", help="print what produced a version (JSON)")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--alias", default=CHAMPION)
    which.add_argument("--version")
    back = sub.add_parser("rollback", help="move champion back to the version it replaced")
    back.add_argument("--to", help="a version number (default: the champion's predecessor)")
    promote = sub.add_parser("promote", help="make a version the champion, bypassing the gate")
    promote.add_argument("--version", required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow
    from mlflow.exceptions import MlflowException

    args = parse_args(argv)
    name = args.name or load_params(args.params).package.model_name
    connect(repo_root())
    client = mlflow.MlflowClient()
    try:
        act(client, name, args)
    except MlflowException as exc:
        raise PipelineError(f"registry: {exc.message}") from exc
    return 0


def act(client: Any, name: str, args: argparse.Namespace) -> None:
    """Carry out the sub-command; what it changed goes to stderr, lineage to stdout."""
    if args.command == "lineage":
        found = (
            client.get_model_version(name, args.version)
            if args.version
            else version_by_alias(client, name, args.alias)
        )
        if found is None:
            raise PipelineError(f"registry: model '{name}' has no version '@{args.alias}'")
        print(json.dumps(lineage(client, name, found), indent=2))  # noqa: T201
    elif args.command == "rollback":
        old, new = rollback(client, name, args.to)
        print(f"{name}: champion v{old} -> v{new}", file=sys.stderr)  # noqa: T201
    else:
        client.get_model_version(name, args.version)
        previous = set_champion(client, name, args.version)
        print(f"{name}: champion v{previous} -> v{args.version}", file=sys.stderr)  # noqa: T201
