"""``python -m mlpipeline experiment``: the pipeline as a DVC experiment with params
overrides (the MLproject entry point).

    python -m mlpipeline experiment [--name NAME] [--queue] key=value ...

runs ``dvc exp run -S key=value ...`` (an empty value keeps ``params.yaml``'s). Under
``mlflow run`` the project run (``MLFLOW_RUN_ID``) becomes the parent of every stage run; see
``mlpipeline.track.runs.stage_run``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
from collections.abc import Sequence

from mlpipeline.core.errors import PipelineError

log = logging.getLogger(__name__)


def overrides(assignments: Sequence[str]) -> list[str]:
    """``key=value`` pairs with a value, as ``-S`` options; ``key=`` keeps params.yaml's."""
    options = []
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"experiment: '{item}' is not key=value")
        if value.strip():
            options += ["-S", f"{key}={value.strip()}"]
    return options


def command(name: str, queue: bool, assignments: Sequence[str]) -> list[str]:
    return [
        "dvc",
        "exp",
        "run",
        *(["-n", name] if name else []),
        *(["--queue"] if queue else []),
        *overrides(assignments),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline experiment", description=__doc__)
    parser.add_argument("--name", default="", help="the experiment's name (default: DVC's)")
    parser.add_argument("--queue", action="store_true", help="queue it (dvc queue start runs it)")
    parser.add_argument("assignments", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = command(args.name, args.queue, args.assignments)
    log.info("%s", shlex.join(cmd))
    return subprocess.run(cmd, check=False).returncode
