"""What every stage's and command's ``main`` shares: logging set-up and clean exits on
expected errors (a message and an exit code, never a traceback)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from mlpipeline.errors import PipelineError

NOISY_LOGGERS = ("great_expectations", "alembic", "numexpr")


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a ``main``; an expected error becomes one readable line and its exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return main(argv) or 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the command's final word
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        return 130


def finish(code: int) -> NoReturn:
    """End the process with ``code``. What is alive now is frozen first: Python's collections
    while it shuts down then leave it alone (~0.8 s saved once GX or MLflow is loaded)."""
    gc.freeze()
    raise SystemExit(code)
