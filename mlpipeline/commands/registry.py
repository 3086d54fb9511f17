"""``python -m mlpipeline registry``: what produced a version, rollback, promotion by hand.

python -m mlpipeline registry lineage [--alias champion | --version N]
python -m mlpipeline registry rollback [--to N | --from-report reports/rollout/rollout.json]
python -m mlpipeline registry promote (--version N | --from-report reports/rollout/rollout.json)

``--from-report`` acts on a rollout report (``python -m mlpipeline rollout-report``): promote
its challenger if it recommends ``promote`` (and the champion is still the one it compared
with); take its challenger out of the rollout if it recommends ``roll back``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import read_json
from mlpipeline.data.names import CHAMPION
from mlpipeline.track.registry import (
    lineage,
    promote_from_report,
    rollback,
    rollback_from_report,
    set_champion,
    version_by_alias,
)
from mlpipeline.track.runs import connect, repo_root


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
    target = back.add_mutually_exclusive_group()
    target.add_argument("--to", help="a version number (default: the champion's predecessor)")
    target.add_argument("--from-report", type=Path, help="a rollout report that says roll back")
    promote = sub.add_parser("promote", help="make a version the champion, bypassing the gate")
    chosen = promote.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--version")
    chosen.add_argument("--from-report", type=Path, help="a rollout report that says promote")
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
    elif getattr(args, "from_report", None):
        report, path = read_json(args.from_report), str(args.from_report)
        if args.command == "rollback":
            done = rollback_from_report(client, name, report, path)
        else:
            old, new = promote_from_report(client, name, report, path)
            done = f"champion v{old} -> v{new}"
        rebuild = "python -m mlpipeline rollout build --mode off"
        print(f"{name}: {done}; rebuild the router: {rebuild}", file=sys.stderr)  # noqa: T201
    elif args.command == "rollback":
        old, new = rollback(client, name, args.to)
        print(f"{name}: champion v{old} -> v{new}", file=sys.stderr)  # noqa: T201
    else:
        client.get_model_version(name, args.version)
        previous = set_champion(client, name, args.version)
        print(f"{name}: champion v{previous} -> v{args.version}", file=sys.stderr)  # noqa: T201
