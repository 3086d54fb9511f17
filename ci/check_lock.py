"""Fail when ``dvc.lock`` after ``dvc repro`` differs from the committed one.

A committed ``dvc.lock`` claims the results in the repository come from its code, data and
params. CI reproduces the pipeline, then runs

    python ci/check_lock.py [--rev HEAD] [--rtol 1e-6] [--ignore PATH ...]

which compares the reproduced ``dvc.lock`` with the one committed at ``--rev``, stage by stage:
the command, the params and the code exactly; data and model outputs (DVC-cached, not in git)
by their hashes, exactly. Outputs kept in git (metrics, plot data, reports) are compared by
content when their hashes differ: text exactly, numbers within a tolerance — relative
``--rtol`` (default 1e-6) of the larger value or, in CSV and text written to a fixed number of
digits, one unit in the last digit written (the finer of the two), whichever is larger —
because another CPU may change a float sum's last bit, and a value printed to six digits then
flips its sixth. A difference names the
stage, the file, the key (JSON), the row and column (CSV) or the line, and both values.

``--ignore`` leaves out outputs that depend on the environment that built them (default: the
packaged model folder, which records the Python and library versions).
Exit code 0: the same; 1: stale or not reproducible (the message says where); 2: no lock.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_IGNORE = ("models/pyfunc",)
DEFAULT_RTOL = 1e-6
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


# ---- numbers -------------------------------------------------------------------------------


def last_digit(text: str) -> float:
    """One unit in the last digit ``text`` writes (``0.0847575`` -> 1e-7, ``1.5e-05`` -> 1e-6);
    0 for an integer (counts and iterations are exact)."""
    if not any(mark in text.lower() for mark in ".e"):
        return 0.0
    mantissa, _, exponent = text.lower().lstrip("+-").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_close(old: str, new: str, rtol: float, rounded: bool = True) -> bool:
    """Two written numbers are the same within ``rtol``, or (``rounded``: written to a fixed
    number of digits) one unit in the last digit they are written to (the finer of the two:
    ``%g`` drops trailing zeros)."""
    a, b = float(old), float(new)
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    written = min(last_digit(old), last_digit(new)) if rounded else 0.0
    allowed = max(rtol * max(abs(a), abs(b)), written)
    return abs(a - b) <= allowed * (1 + 1e-9)  # the subtraction's own rounding


def _is_number(text: str) -> bool:
    return bool(NUMBER.fullmatch(text.strip()))


# ---- file contents -------------------------------------------------------------------------


def json_differences(old: Any, new: Any, rtol: float, key: str = "") -> Iterator[str]:
    """Keys whose values differ (numbers beyond the tolerance), as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new), key=str):
            where = f"{key}.{name}" if key else str(name)
            if name not in old or name not in new:
                yield f"{where}: {old.get(name, '(absent)')!r} -> {new.get(name, '(absent)')!r}"
            else:
                yield from json_differences(old[name], new[name], rtol, where)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from json_differences(a, b, rtol, f"{key}[{index}]")
    elif _numeric(old) and _numeric(new) and isinstance(old, float) | isinstance(new, float):
        if not numbers_close(repr(old), repr(new), rtol, rounded=False):  # JSON: every digit
            yield f"{key or '(value)'}: {old!r} -> {new!r}"
    elif old != new:
        yield f"{key or '(value)'}: {old!r} -> {new!r}"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def csv_differences(old: str, new: str, rtol: float) -> Iterator[str]:
    """Cells that differ (numbers beyond the tolerance), as ``row N column C: old -> new``."""
    before, after = list(csv.reader(io.StringIO(old))), list(csv.reader(io.StringIO(new)))
    if not before or not after or before[0] != after[0]:
        yield f"header: {before[:1]} -> {after[:1]}"
        return
    if len(before) != len(after):
        yield f"rows: {len(before) - 1} -> {len(after) - 1}"
        return
    header = before[0]
    for number, (row_a, row_b) in enumerate(zip(before[1:], after[1:], strict=True)):
        for column, a, b in zip(header, row_a, row_b, strict=False):
            if a != b and not (_is_number(a) and _is_number(b) and numbers_close(a, b, rtol)):
                yield f"row {number} column {column}: {a} -> {b}"
        if len(row_a) != len(row_b):
            yield f"row {number}: {len(row_a)} cells -> {len(row_b)}"


def text_differences(old: str, new: str, rtol: float) -> Iterator[str]:
    """Lines that differ in their text, or in a number beyond the tolerance."""
    before, after = old.splitlines(), new.splitlines()
    if len(before) != len(after):
        yield f"lines: {len(before)} -> {len(after)}"
    for number, (a, b) in enumerate(zip(before, after, strict=False), start=1):
        if a != b and not _same_but_for_noise(a, b, rtol):
            yield f"line {number}: {a.strip()[:120]!r} -> {b.strip()[:120]!r}"


def _same_but_for_noise(a: str, b: str, rtol: float) -> bool:
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    pairs = zip(NUMBER.findall(a), NUMBER.findall(b), strict=True)
    return all(numbers_close(x, y, rtol) for x, y in pairs)


def content_differences(path: str, old: str, new: str, rtol: float) -> list[str]:
    """What differs between two versions of a text output, by its kind."""
    if path.endswith(".json"):
        try:
            return list(json_differences(json.loads(old), json.loads(new), rtol))
        except ValueError:
            pass  # not JSON after all: compared as text
    if path.endswith(".csv"):
        return list(csv_differences(old, new, rtol))
    return list(text_differences(old, new, rtol))


# ---- git and the lock ----------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def committed_lock(rev: str, path: str = "dvc.lock") -> dict[str, Any]:
    shown = git("show", f"{rev}:{path}")
    if shown.returncode != 0:
        raise SystemExit(f"error: no {path} committed at {rev}: {shown.stderr.strip()}")
    return yaml.safe_load(shown.stdout) or {}


def tracked_files(rev: str, path: str) -> list[str]:
    """The files git holds at ``rev`` under ``path`` (the file itself, or a folder's files)."""
    listed = git("ls-tree", "-r", "--name-only", rev, "--", path)
    return listed.stdout.split() if listed.returncode == 0 else []


def compare_tracked(rev: str, path: str, rtol: float) -> list[str] | None:
    """Differences between the output ``path`` committed at ``rev`` and the workspace's, by
    content; None when git does not hold it (a DVC-cached output: only its hash counts)."""
    files = tracked_files(rev, path)
    if not files:
        return None
    root = Path(path)
    present = sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    found = []
    if root.is_dir() and sorted(files) != present:
        found.append(f"files: {sorted(set(files) ^ set(present))} only on one side")
    for name in files:
        if not Path(name).is_file():
            found.append(f"{name}: missing")
            continue
        old = git("show", f"{rev}:{name}").stdout
        new = Path(name).read_text(errors="replace")
        where = f"{name}: " if root.is_dir() else ""
        found += [where + d for d in content_differences(name, old, new, rtol)]
    return found


def _hashes(entries: list[dict] | None, ignore: set[str]) -> dict[str, str]:
    return {e["path"]: e.get("md5", "") for e in entries or [] if e["path"] not in ignore}


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _params(stage: dict) -> dict[str, Any]:
    """``file:dotted.key`` -> value, for every param the stage recorded."""
    return {
        f"{file}:{key}": value
        for file, values in (stage.get("params") or {}).items()
        for key, value in _flat(values).items()
    }


class Comparison:
    """How outputs kept in git are compared when their hashes differ (see the module doc)."""

    def __init__(self, rev: str | None, outputs: set[str], rtol: float) -> None:
        self.rev, self.outputs, self.rtol = rev, outputs, rtol
        self.tolerated: list[str] = []  # paths whose hashes differ only by numeric noise

    def explain(self, path: str, before: str | None, after: str | None) -> list[str]:
        """Why ``path`` counts as changed (empty: it does not)."""
        if self.rev and path in self.outputs and before and after:
            found = compare_tracked(self.rev, path, self.rtol)
            if found == []:
                self.tolerated.append(path)
                return []
            if found:
                return found
        return [f"{before} -> {after}"]


def stage_differences(old: dict, new: dict, ignore: set[str], compare: Comparison) -> list[str]:
    """What differs in one stage, as readable phrases."""
    found = []
    if old.get("cmd") != new.get("cmd"):
        found.append("command")
    for kind in ("deps", "outs"):
        before, after = _hashes(old.get(kind), ignore), _hashes(new.get(kind), ignore)
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path):
                why = compare.explain(path, before.get(path), after.get(path))
                found += [f"{kind[:-1]} {path}: {reason}" for reason in why]
    params_before, params_after = _params(old), _params(new)
    for key in sorted(set(params_before) | set(params_after)):
        if params_before.get(key) != params_after.get(key):
            found.append(f"param {key} ({params_before.get(key)!r} -> {params_after.get(key)!r})")
    return found


def differences(
    committed: dict, reproduced: dict, ignore: set[str], compare: Comparison | None = None
) -> dict[str, list[str]]:
    """Stage name -> what differs, for every stage that is not the same."""
    old, new = committed.get("stages", {}), reproduced.get("stages", {})
    compare = compare or Comparison(None, set(), DEFAULT_RTOL)
    out = {}
    for stage in sorted(set(old) | set(new)):
        if stage not in old:
            out[stage] = ["not in the committed dvc.lock"]
        elif stage not in new:
            out[stage] = ["not in the reproduced dvc.lock"]
        elif found := stage_differences(old[stage], new[stage], ignore, compare):
            out[stage] = found
    return out


def output_paths(lock: dict) -> set[str]:
    return {o["path"] for stage in lock.get("stages", {}).values() for o in stage.get("outs", [])}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision of the committed dvc.lock")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="reproduced lock")
    parser.add_argument(
        "--rtol", type=float, default=DEFAULT_RTOL, help="relative tolerance for numbers"
    )
    parser.add_argument(
        "--ignore", action="append", help=f"output path to leave out (default: {DEFAULT_IGNORE})"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if not args.lock.exists():
        sys.stderr.write(f"error: {args.lock} does not exist: run `dvc repro` first\n")
        return 2
    ignore = set(args.ignore or DEFAULT_IGNORE)
    reproduced = yaml.safe_load(args.lock.read_text())
    compare = Comparison(args.rev, output_paths(reproduced), args.rtol)
    found = differences(committed_lock(args.rev), reproduced, ignore, compare)
    for path in sorted(set(compare.tolerated)):
        sys.stderr.write(f"note: {path} differs from {args.rev} only within the tolerance\n")
    if not found:
        sys.stderr.write(f"dvc.lock reproduced: every stage matches {args.rev}\n")
        return 0
    lines = [f"error: dvc.lock at {args.rev} is stale or not reproducible; stage(s) that differ:"]
    for stage, what in found.items():
        lines.append(f"  {stage}:")
        lines += [f"    {item}" for item in what]
    lines.append("Run `dvc repro` and commit dvc.lock (and the outputs it names).")
    sys.stderr.write("\n".join(lines) + "\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
