from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.scale_data import main, noisy_sample, partition_sizes


def _source() -> pd.DataFrame:
    return pd.DataFrame(
        {"carat": [0.3, 1.0, 2.0], "table": [55, 57, 60], "cut": ["Good", "Ideal", "Fair"]}
    )


def test_a_noisy_sample_keeps_columns_types_and_categories():
    sample = noisy_sample(_source(), 1000, 0.02, seed=1)
    assert list(sample.columns) == ["carat", "table", "cut"] and len(sample) == 1000
    assert sample["table"].dtype == np.int64 and set(sample["cut"]) <= {"Good", "Ideal", "Fair"}
    ratio = sample["carat"] / sample["cut"].map({"Good": 0.3, "Ideal": 1.0, "Fair": 2.0})
    assert ratio.min() > 0.9 and ratio.max() < 1.1 and ratio.std() > 0.005  # noise, but small
    assert noisy_sample(_source(), 1000, 0.02, seed=1).equals(sample)  # seeded


def test_partitions_add_up():
    assert partition_sizes(10, 3) == [4, 3, 3] and sum(partition_sizes(1_000_001, 2)) == 1_000_001


def test_the_command_writes_one_parquet_file_per_partition(tmp_path):
    _source().to_parquet(tmp_path / "raw.parquet")
    out = tmp_path / "scale"
    args = ["--rows", "2500", "--partitions", "3", "--source", str(tmp_path / "raw.parquet")]
    assert main([*args, "--out", str(out)]) == 0
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3
    assert sum(len(pd.read_parquet(p)) for p in parts) == 2500
