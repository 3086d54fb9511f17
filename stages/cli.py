"""What every stage's ``main`` shares: logging set-up and clean exits on expected errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from stages.errors import StageError

log = logging.getLogger(__name__)


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a stage's ``main``; an expected error becomes one readable line and its exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("great_expectations", "alembic", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return main(argv) or 0
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's final word
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        return 130
