"""Fail when ``dvc.lock`` after ``dvc repro`` differs from the committed one.

A committed ``dvc.lock`` claims the results in the repository come from its code, data and
params. CI reproduces the pipeline, then runs

    python ci/check_lock.py [--rev HEAD] [--ignore PATH ...]

which compares the reproduced ``dvc.lock`` with the one committed at ``--rev``, stage by stage
(command, dependency and output hashes, params), and names every stage that differs and how.
``--ignore`` leaves out outputs that cannot be reproduced byte for byte (the packaged model
carries MLflow's creation time and UUID; the registry version lives outside the repository).
Exit code 0: the same; 1: stale or not reproducible (the message says which stages); 2: no lock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_IGNORE = ("models/pyfunc", "reports/model_card.md", "reports/package.json")


def committed_lock(rev: str, path: str = "dvc.lock") -> dict[str, Any]:
    shown = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        raise SystemExit(f"error: no {path} committed at {rev}: {shown.stderr.strip()}")
    return yaml.safe_load(shown.stdout) or {}


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


def stage_differences(old: dict, new: dict, ignore: set[str]) -> list[str]:
    """What differs in one stage, as readable phrases."""
    found = []
    if old.get("cmd") != new.get("cmd"):
        found.append("command")
    for kind in ("deps", "outs"):
        before, after = _hashes(old.get(kind), ignore), _hashes(new.get(kind), ignore)
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path):
                found.append(f"{kind[:-1]} {path} ({before.get(path)} -> {after.get(path)})")
    params_before, params_after = _params(old), _params(new)
    for key in sorted(set(params_before) | set(params_after)):
        if params_before.get(key) != params_after.get(key):
            found.append(f"param {key} ({params_before.get(key)!r} -> {params_after.get(key)!r})")
    return found


def differences(committed: dict, reproduced: dict, ignore: set[str]) -> dict[str, list[str]]:
    """Stage name -> what differs, for every stage that is not the same."""
    old, new = committed.get("stages", {}), reproduced.get("stages", {})
    out = {}
    for stage in sorted(set(old) | set(new)):
        if stage not in old:
            out[stage] = ["not in the committed dvc.lock"]
        elif stage not in new:
            out[stage] = ["not in the reproduced dvc.lock"]
        elif found := stage_differences(old[stage], new[stage], ignore):
            out[stage] = found
    return out


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision of the committed dvc.lock")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="reproduced lock")
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
    found = differences(committed_lock(args.rev), yaml.safe_load(args.lock.read_text()), ignore)
    if not found:
        sys.stderr.write(f"dvc.lock reproduced: every stage matches {args.rev}\n")
        return 0
    lines = [f"error: dvc.lock at {args.rev} is stale or not reproducible; stage(s) that differ:"]
    for stage, what in found.items():
        lines.append(f"  {stage}: " + "; ".join(what))
    lines.append("Run `dvc repro` and commit dvc.lock (and the outputs it names).")
    sys.stderr.write("\n".join(lines) + "\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
