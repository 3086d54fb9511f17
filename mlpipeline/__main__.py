"""``python -m mlpipeline <command> [options]``: the pipeline's commands for people.

    init          adapt the repository to your own table (params.yaml and both suites)
    monitor       drift of a new batch against what the model was trained on
    predict       score a batch of raw rows with the registered champion (or a version)
    registry      lineage of a version, rollback, promotion by hand
    rollout       build the router: the challenger beside the champion (shadow, canary)
    rollout-report  the live log: challenger vs champion, drift, promote or roll back
    build-suite   write a Great Expectations suite from a trusted table
    experiment    run the pipeline as a DVC experiment with params overrides
    analyze       the searches analysed: leaderboard, sensitivity, robustness of the winner
    plots         the DVC plots as PNG and as a page that renders offline; the card as HTML
    server        a team's tracking server here: mlflow server on PostgreSQL and S3 (to try)
    deps          each stage's code dependencies in dvc.yaml: checked, or written (--write)

``python -m mlpipeline <command> --help`` describes each. The five stages are ``stages/``,
run by ``dvc repro``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mlpipeline.core import cli

COMMANDS = {
    "init": "mlpipeline.commands.init",
    "monitor": "mlpipeline.commands.monitor",
    "predict": "mlpipeline.commands.predict",
    "registry": "mlpipeline.commands.registry",
    "rollout": "mlpipeline.commands.rollout",
    "rollout-report": "mlpipeline.commands.rollout_report",
    "build-suite": "mlpipeline.commands.build_suite",
    "experiment": "mlpipeline.commands.experiment",
    "analyze": "mlpipeline.commands.analyze",
    "plots": "mlpipeline.commands.plots",
    "deps": "mlpipeline.commands.deps",
    "server": "mlpipeline.commands.server",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)  # noqa: T201 - the command line's own help
        return 0
    if args[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"error: unknown command '{args[0]}' (commands: {known})", file=sys.stderr)  # noqa: T201
        return 2
    command = importlib.import_module(COMMANDS[args[0]])  # only that command's imports
    return cli.run(command.main, args[1:])


if __name__ == "__main__":
    cli.finish(main())
