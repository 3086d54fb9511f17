"""Stage ``ingest``: read the source table named in params, write it as Parquet.

The source is either ``package://<package>/<path>`` (a data file shipped inside an installed
Python package, located without importing the package) or any local path or URL that pandas
and fsspec read, as CSV or Parquet. Besides the data it writes a metadata file: source, row
count, schema and a content hash.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stages import cli, engine
from stages.errors import StageError
from stages.files import frame_hash, write_json, write_parquet
from stages.params import IngestParams, Params, load_params
from stages.tracking import stage_run

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "package://"
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def resolve_source(source: str) -> str:
    """Turn a ``package://`` source into a file path; return other sources unchanged."""
    if not source.startswith(PACKAGE_SCHEME):
        return source
    package, _, relative = source.removeprefix(PACKAGE_SCHEME).partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or spec.origin is None:
        raise StageError(f"ingest.source: package '{package}' is not installed ({source})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise StageError(f"ingest.source: {source} does not exist (looked at {path})")
    return str(path)


def source_format(location: str, declared: str) -> str:
    """``csv`` or ``parquet``: as declared, or from the file name."""
    if declared != "auto":
        return declared
    name = location.lower().split("?", 1)[0]
    return "parquet" if name.endswith(_PARQUET_SUFFIXES) else "csv"


def read_table(location: str, fmt: str, options: dict) -> pd.DataFrame:
    """Read a CSV or Parquet table; a broken or missing file raises ``StageError``."""
    reader = pd.read_parquet if fmt == "parquet" else pd.read_csv
    try:
        frame = reader(location, **options)
    except FileNotFoundError as exc:
        raise StageError(f"ingest: source file not found: {location}") from exc
    except Exception as exc:  # parsers raise many types; all mean "unreadable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"ingest: cannot read {location} as {fmt}: {reason}") from exc
    if frame.empty:
        raise StageError(f"ingest: {location} has no rows")
    return frame


def describe(frame: pd.DataFrame, source: str) -> dict:
    """Row count, schema and content hash of the ingested table."""
    return {
        "source": source,
        "rows": len(frame),
        "columns": frame.shape[1],
        "schema": [f"{column}: {dtype}" for column, dtype in frame.dtypes.items()],
        "content_sha256": frame_hash(frame),
    }


def describe_partitioned(frame: Any, source: str) -> dict:
    """``describe`` for a Dask dataframe: the same fields, the same content hash."""
    import dask

    parts = dask.compute(*[dask.delayed(_row_hashes)(part) for part in frame.to_delayed()])
    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    for hashes in parts:
        digest.update(hashes)
    rows = sum(len(hashes) for hashes in parts) // 8
    if rows == 0:
        raise StageError(f"ingest: {source} has no rows")
    return {
        "source": source,
        "rows": rows,
        "columns": frame.shape[1],
        "schema": [f"{column}: {dtype}" for column, dtype in frame.dtypes.items()],
        "content_sha256": digest.hexdigest(),
    }


def _row_hashes(part: pd.DataFrame) -> bytes:
    return pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes()


def ingest_partitioned(location: str, fmt: str, params: Params, out: Path) -> dict:
    """Read the source with Dask and write it as partitioned Parquet; return its metadata."""
    ingest = params.ingest
    frame = engine.read_source(location, fmt, ingest.read_options, params.dask.blocksize)
    try:
        engine.write_parquet(frame, out)
    except StageError:
        raise
    except Exception as exc:  # a bad row or type found while reading a later partition
        raise StageError(
            f"ingest: cannot read {location} as {fmt}: {engine.read_error(exc)}"
        ) from exc
    return describe_partitioned(engine.read_parquet(out), ingest.source)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--out", type=Path, required=True, help="Parquet to write (a directory with engine: dask)"
    )
    parser.add_argument("--meta", type=Path, required=True, help="metadata JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    all_params = load_params(args.params)
    params: IngestParams = all_params.ingest
    location = resolve_source(params.source)
    fmt = source_format(location, params.format)
    with stage_run("ingest", params, inputs={}) as run:
        if all_params.engine == "dask":
            with engine.dask_client(all_params.dask):
                meta = ingest_partitioned(location, fmt, all_params, args.out)
        else:
            frame = read_table(location, fmt, params.read_options)
            meta = describe(frame, params.source)
            write_parquet(frame, args.out)
        log.info("read %d rows x %d columns from %s", meta["rows"], meta["columns"], location)
        write_json(meta, args.meta)
        run.set_tags(
            {
                "data.raw.sha256": meta["content_sha256"],
                "data.source": params.source,
                "engine": all_params.engine,
            }
        )
        run.log_metrics({"rows": meta["rows"], "columns": meta["columns"]})
        run.log_artifact(args.meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
