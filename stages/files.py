"""Atomic writes and content hashes, so a crash never leaves half an output behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        if target.is_dir():  # the same output written as a directory by engine: dask
            shutil.rmtree(target)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory path; it replaces ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    build = staging / target.name
    try:
        yield build
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():  # the same output written as one file by engine: pandas
            target.unlink()
        os.replace(build, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(data: Any, path: Path) -> None:
    """Write sorted, indented JSON atomically (stable bytes for DVC and for review)."""
    write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path)


def write_text(text: str, path: Path) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame to Parquet atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame to CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def write_with(writer: Callable[[Path], Any], path: Path) -> None:
    """Let ``writer`` write to a temporary file that then replaces ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes: the same digest DVC records for it in ``dvc.lock``."""
    digest = hashlib.md5()  # noqa: S324 - an identity hash, matching DVC's
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_md5(path: Path) -> str:
    """``file_md5`` of a file; for a directory (partitioned Parquet), the MD5 of its files'
    relative paths and MD5s, in path order."""
    path = Path(path)
    if not path.is_dir():
        return file_md5(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = [[str(p.relative_to(path)), file_md5(p)] for p in files]
    return hashlib.md5(json.dumps(listing).encode()).hexdigest()  # noqa: S324 - identity hash


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, dtypes and values (independent of file format)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
