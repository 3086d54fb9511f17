"""``python -m mlpipeline rollout build``: serve the challenger beside the champion.

Builds the router model from the registry's champion and challenger with the ``rollout``
section of ``params.yaml`` (``--mode`` and ``--share`` override ``rollout.mode`` and
``rollout.canary_share``), checks that it answers the champion's input example, and registers
it as a new version of ``<package.model_name>-router`` with the alias ``live``. Serve it with

    mlflow models serve -m models:/<package.model_name>-router@live --env-manager local

(restart a running server to load a new version). Modes: ``off`` (the champion answers),
``shadow`` (the champion answers; the challenger's outputs are only logged), ``canary`` (the
challenger answers a share of request keys). Every answered row is logged under
``rollout.log_dir`` (``PIPELINE_PREDICTION_LOG`` overrides it where the server runs; ``off``
turns the log off). See docs/rollout.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core.config import RolloutParams, describe_errors, load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.serve.rollout import build_router
from mlpipeline.track.runs import TRACKING_SWITCH, connect, repo_root, stage_run, tracking_enabled


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline rollout", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build and register the router (alias live)")
    build.add_argument("--mode", choices=["off", "shadow", "canary"], help="rollout.mode")
    build.add_argument("--share", type=float, help="rollout.canary_share (0 to 1)")
    return parser.parse_args(argv)


def settings(base: RolloutParams, mode: str | None, share: float | None) -> RolloutParams:
    """The ``rollout`` section with the command line's overrides, validated."""
    from pydantic import ValidationError

    given = {"mode": mode, "canary_share": share}
    update = {k: v for k, v in given.items() if v is not None}
    try:
        return RolloutParams.model_validate(base.model_dump() | update)
    except ValidationError as exc:
        raise PipelineError("rollout: " + describe_errors(exc).strip()) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    rollout = settings(params.rollout, args.mode, args.share)
    if not tracking_enabled():
        raise PipelineError(f"rollout: registers the router in MLflow; unset {TRACKING_SWITCH}")
    connect(repo_root())
    with (
        stage_run("rollout", rollout, inputs={}, pipeline=False, in_process=True) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        built = build_router(run, params, rollout, Path(scratch))
    members = ", ".join(f"{role} v{v}" for role, v in built["versions"].items())
    share = f" ({rollout.canary_share:.0%} to the challenger)" if rollout.mode == "canary" else ""
    print(  # noqa: T201 - the command's summary
        f"{built['router']} v{built['version']} (@live): mode {rollout.mode}{share}; {members}; "
        f"log: {rollout.log_dir or 'off'}\nserve: mlflow models serve -m "
        f"models:/{built['router']}@live --env-manager local",
        file=sys.stderr,
    )
    return 0
