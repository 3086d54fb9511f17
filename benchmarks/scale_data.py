"""Write a large table like the raw data, for benchmarks and scale tests.

    python -m benchmarks.scale_data --rows 10000000 --out data/scale/10m [--partitions 20]

Rows are drawn with replacement from the ingested table (``data/raw/data.parquet``, so run
``dvc repro ingest`` first, or give ``--source``); numeric columns get multiplicative noise
(log-normal, ``--noise`` = its sigma), integer columns stay integers, other columns are copied.
The output is a folder of Parquet files, one per partition, written one at a time so memory
stays at one partition. Seeded: the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.data.io import write_parquet

log = logging.getLogger(__name__)


def noisy_sample(source: pd.DataFrame, rows: int, noise: float, seed: int) -> pd.DataFrame:
    """``rows`` rows resampled from ``source``, numeric columns scaled by log-normal noise."""
    rng = np.random.default_rng(seed)
    sample = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
    for column in sample.columns:
        values = sample[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            continue
        scaled = values.to_numpy(dtype=float) * rng.lognormal(0.0, noise, rows)
        if pd.api.types.is_integer_dtype(values):
            scaled = np.round(scaled).astype(values.dtype)
        sample[column] = scaled
    return sample


def partition_sizes(rows: int, partitions: int) -> list[int]:
    base, extra = divmod(rows, partitions)
    return [base + (i < extra) for i in range(partitions)]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of Parquet partitions")
    parser.add_argument("--source", type=Path, default=Path("data/raw/data.parquet"))
    parser.add_argument("--partitions", type=int, default=0, help="default: one per 500k rows")
    parser.add_argument("--noise", type=float, default=0.02, help="sigma of the log-normal noise")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parse_args(argv)
    if args.rows < 1:
        sys.exit("error: --rows must be at least 1")
    if not args.source.exists():
        sys.exit(f"error: {args.source} does not exist: run `dvc repro ingest` or give --source")
    source = pd.read_parquet(args.source)
    partitions = args.partitions or max(1, -(-args.rows // 500_000))
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("part-*.parquet"):
        stale.unlink()
    for number, size in enumerate(partition_sizes(args.rows, partitions)):
        part = noisy_sample(source, size, args.noise, seed=args.seed * 100_003 + number)
        write_parquet(part, args.out / f"part-{number:05d}.parquet")
    log.info("%d rows in %d partition(s) in %s", args.rows, partitions, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
