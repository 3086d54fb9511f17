"""Reading tables, writing outputs atomically (a crash never leaves half an output behind),
and content hashes.

A source is ``package://<package>/<path>`` (a data file shipped inside an installed Python
package, located without importing it) or any local path or URL that pandas and fsspec read,
as CSV or Parquet.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd

from mlpipeline.core.errors import PipelineError

PACKAGE_SCHEME = "package://"
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def resolve_source(source: str) -> str:
    """Turn a ``package://`` source into a file path; return other sources unchanged."""
    if not source.startswith(PACKAGE_SCHEME):
        return source
    package, _, relative = source.removeprefix(PACKAGE_SCHEME).partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or spec.origin is None:
        raise PipelineError(f"dataset.source: package '{package}' is not installed ({source})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise PipelineError(f"dataset.source: {source} does not exist (looked at {path})")
    return str(path)


def source_format(location: str, declared: str = "auto") -> str:
    """``csv`` or ``parquet``: as declared, or from the file name (a folder: its parts')."""
    if declared != "auto":
        return declared
    if Path(location).is_dir():
        parts = [p.name.lower() for p in partition_files(Path(location))]
        return "parquet" if any(n.endswith(_PARQUET_SUFFIXES) for n in parts) else "csv"
    name = location.lower().split("?", 1)[0]
    return "parquet" if name.endswith(_PARQUET_SUFFIXES) else "csv"


def partition_files(folder: Path) -> list[Path]:
    """A partitioned folder's data files, in path order: marker and hidden files (``_SUCCESS``,
    ``.crc``, ``_metadata``, DVC's ``.gitignore``) left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
    )


def read_partitioned(
    folder: Path, read: Callable[[Path], pd.DataFrame], window: Window | None = None
) -> pd.DataFrame:
    """A folder of parts as Spark, Hive or Kafka Connect write them (``key=value/`` folders of
    ``part-*.parquet`` or CSV files) as one table: the parts in path order, each ``key`` a
    column of its values (numbers where every value is one; Hive's %XX escapes decoded)."""
    files = partition_files(folder)
    if not files:
        raise PipelineError(f"ingest: {folder} is a folder without data files")
    files = in_window(files, folder, window or {})
    frames, keys = [], {}
    for path in files:
        found = partition_values(path, folder)
        frames.append(read(path).assign(**found))
        keys.update(dict.fromkeys(found))
    same_schema(files, frames, folder)
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(**{key: _numbers_if_all(frame[key]) for key in keys})


def same_schema(files: list[Path], frames: list[pd.DataFrame], folder: Path) -> None:
    """Every part has the first part's columns, or the folder is refused, naming the part."""
    first = list(frames[0].columns)
    for path, frame in zip(files[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            missing = sorted(set(first) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first))
            raise PipelineError(
                f"ingest: {path.relative_to(folder)} in {folder} has other columns than "
                f"{files[0].relative_to(folder)} (missing {missing}, extra {extra}); a "
                "partitioned source needs one schema: rewrite or move that part"
            )


def in_window(files: list[Path], folder: Path, window: Window) -> list[Path]:
    """The parts whose partition values lie in ``window`` (bounds included)."""
    keys = partition_keys(str(folder))
    unknown = [key for key in window if key not in keys]
    if unknown:
        raise PipelineError(
            f"dataset.partitions: {unknown} are not partition keys of {folder} (it has: {keys})"
        )
    kept = [path for path in files if _inside(partition_values(path, folder), window)]
    if not kept:
        raise PipelineError(
            f"dataset.partitions: no partition of {folder} lies in {window}; widen the window"
        )
    return kept


def _inside(values: dict[str, str], window: Window) -> bool:
    for key, (first, last) in window.items():
        value = values.get(key)
        if value is None:
            return False
        numeric = isinstance(first, int | float) or isinstance(last, int | float)
        try:
            found = float(value) if numeric else value
        except ValueError:
            return False
        if (first is not None and found < first) or (last is not None and found > last):
            return False
    return True


def partition_values(path: Path, folder: Path) -> dict[str, str]:
    """The ``key=value`` folders between ``folder`` and the part at ``path``."""
    parts = path.relative_to(folder).parent.parts
    return dict(unquote(part).split("=", 1) for part in parts if "=" in part)


def partition_keys(location: str) -> list[str]:
    """The partition keys of a folder source (its ``key=value`` folders), in order; [] else."""
    folder = Path(location)
    if not folder.is_dir():
        return []
    keys = (partition_values(path, folder) for path in partition_files(folder))
    return list(dict.fromkeys(key for found in keys for key in found))


def _numbers_if_all(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().all() else values


Window = dict[str, tuple[Any, Any]]  # partition key -> (first, last), either None: open


def read_table(
    location: str,
    fmt: str,
    options: dict,
    dtypes: dict[str, str] | None = None,
    window: Window | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet table; a broken or missing file raises ``PipelineError``.

    Every entry point reads through here, so a table means the same everywhere: a column of
    booleans with missing values is pandas' nullable ``boolean`` (not objects). ``dtypes``
    (the training table's, from the raw suite) reads a new batch with the reference's schema
    instead of inferring it again: a text column stays text even where a sample of it holds
    only digits. ``window`` reads only those partitions of a partitioned folder."""
    reader = pd.read_parquet if fmt == "parquet" else pd.read_csv
    text = [c for c, dtype in (dtypes or {}).items() if is_text_dtype(dtype)]
    if fmt == "csv" and text and "dtype" not in options:
        options = {**options, "dtype": dict.fromkeys(text, str)}
    try:
        if Path(location).is_dir():
            read = functools.partial(reader, **options)
            frame = read_partitioned(Path(location), read, window or {})
        elif window:
            raise PipelineError(
                f"dataset.partitions: {location} is not a partitioned folder; remove the key "
                "(or point dataset.source at the folder of key=value partitions)"
            )
        else:
            frame = reader(location, **options)
    except PipelineError:
        raise
    except FileNotFoundError as exc:
        raise PipelineError(f"ingest: source file not found: {location}") from exc
    except Exception as exc:  # parsers raise many types; all mean "unreadable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"ingest: cannot read {location} as {fmt}: {reason}") from exc
    if frame.empty:
        raise PipelineError(f"ingest: {location} has no rows")
    check_delimiter(frame, location, options)
    return conformed(with_booleans(frame), text)


def is_text_dtype(dtype: object) -> bool:
    return str(dtype) in ("str", "string", "object")


def with_booleans(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns that hold only booleans and missing values, as nullable ``boolean``."""
    found = {}
    for column in frame.columns[frame.dtypes == object]:  # noqa: E721 - a dtype comparison
        present = frame[column].dropna()
        if len(present) and present.map(type).isin([bool, np.bool_]).all():
            found[column] = frame[column].astype("boolean")
    return frame.assign(**found) if found else frame


def conformed(frame: pd.DataFrame, text: list[str]) -> pd.DataFrame:
    """The ``text`` columns as text (a Parquet batch may carry them as numbers)."""
    found = {
        c: frame[c].astype(object).where(frame[c].notna()).map(_as_text, na_action="ignore")
        for c in text
        if c in frame.columns and not is_text_dtype(frame[c].dtype)
    }
    return frame.assign(**{c: v.astype("str") for c, v in found.items()}) if found else frame


def _as_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


SEPARATORS = (";", "\t", "|")


def check_delimiter(frame: pd.DataFrame, location: str, options: dict) -> None:
    """A CSV read as one column whose name holds another separator: say which to set."""
    name = str(frame.columns[0])
    found = [sep for sep in SEPARATORS if sep in name]
    if frame.shape[1] == 1 and found and "sep" not in options:
        shown = repr(found[0])
        raise PipelineError(
            f"ingest: {location} read as one column ({name[:60]!r}): its columns are "
            f"separated by {shown}; set dataset.read_options: {{sep: {shown}}}"
        )


def read_source(
    source: str,
    fmt: str = "auto",
    options: dict | None = None,
    dtypes: dict[str, str] | None = None,
    window: Window | None = None,
) -> pd.DataFrame:
    """``read_table`` of a source as params name it (``package://``, path or URL)."""
    location = resolve_source(source)
    return read_table(location, source_format(location, fmt), options or {}, dtypes, window)


def read_named(specs: list[str], label: str) -> pd.DataFrame:
    """Read ``PATH`` or several ``NAME=PATH`` tables; several are stacked, with ``label``
    naming each row's table."""
    named = [spec.split("=", 1) if "=" in spec else ["", spec] for spec in specs]
    if len(named) == 1:
        return read_source(named[0][1])
    frames = [read_source(source).assign(**{label: name}) for name, source in named]
    return pd.concat(frames, ignore_index=True)


def describe(frame: pd.DataFrame, source: str) -> dict:
    """Row count, schema and content hash of a table (ingest's metadata)."""
    return {
        "source": source,
        "rows": len(frame),
        "columns": frame.shape[1],
        "schema": [f"{column}: {dtype}" for column, dtype in frame.dtypes.items()],
        "content_sha256": frame_hash(frame),
    }


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


def dvc_md5(path: Path) -> str:
    """The hash ``dvc.lock`` records for a file or a folder (``<md5>.dir``: the MD5 of DVC's
    sorted listing of relative paths and file MD5s), to compare a workspace path with a lock."""
    path = Path(path)
    if not path.is_dir():
        return file_md5(path)
    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    listing = [{"md5": file_md5(p), "relpath": name} for name, p in files]
    text = json.dumps(listing, sort_keys=True)
    return hashlib.md5(text.encode()).hexdigest() + ".dir"  # noqa: S324 - DVC's identity hash


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, dtypes and values (independent of file format)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
