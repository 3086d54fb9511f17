"""What every benchmark shares: timing, the machine and load it ran on, the versions and the
commit it measured, and the command that reproduces it. Each ``benchmarks/<name>.py`` keeps
only what it measures; the results files all start with the same facts."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q))


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def usable_cores() -> int:
    """The cores this process may run on (``nproc``), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_1min() -> float:
    """The 1-minute load average (0 where the OS has none): more than the benchmark's own
    threads means other processes shared the cores."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs ({usable_cores()} usable), "
        f"Python {platform.python_version()}"
    )


def versions(packages: Sequence[str]) -> str:
    return ", ".join(f"{name} {version(name)}" for name in packages)


def revision() -> str:
    """The commit measured, and how many files of the working tree differ from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    changed = len(status.stdout.splitlines())
    return f"HEAD {head.stdout.strip()}, {changed} file(s) changed or new in the working tree"


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as typed from the repository root."""
    shown = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python -m", module, *shown])


def positive(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def facts_list(facts: dict[str, str]) -> str:
    """The facts a results file starts with, as a Markdown list."""
    return "\n".join(f"- {key}: {value}" for key, value in facts.items())
