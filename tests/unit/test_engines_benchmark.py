"""The engines benchmark measures a process tree's peak memory and reports growth ratios."""

from __future__ import annotations

import os
import sys

from benchmarks.engines import measure, report, scaled_suite

HOLD = (  # allocates and touches every page of {mb} MB, then holds it half a second
    "import time; block = bytearray({mb} * 2**20); block[::4096] = b'x' * {mb} * 256; "
    "time.sleep(0.5)"
)


def test_peak_memory_counts_child_processes():
    child = HOLD.format(mb=150)
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    result = measure([sys.executable, "-c", parent], dict(os.environ))
    assert result["exit"] == 0
    assert result["peak_mb"] > 150


def test_suite_row_count_follows_the_table(tmp_path):
    import json

    suite = json.loads(scaled_suite(tmp_path, 1_000_000).read_text())
    counts = [e for e in suite["expectations"] if e["type"].startswith("expect_table_row_count")]
    assert counts[0]["kwargs"]["min_value"] == 500_000
    assert counts[0]["kwargs"]["max_value"] == 2_000_000


def test_report_gives_growth_from_the_smallest_to_the_largest_size():
    cell = lambda s, m: {"seconds": s, "peak_mb": m, "exit": 0}  # noqa: E731
    results = {
        "pandas": {
            10: {"ingest": cell(1.0, 100), "fit": {**cell(2.0, 50), "fit_seconds": 1.5}},
            100: {"ingest": cell(8.0, 900), "fit": {**cell(20.0, 400), "fit_seconds": 15.0}},
        }
    }
    text = report(results, {10: 1.0, 100: 10.0}, "300MiB")
    assert "| ingest | pandas | 1.0 / 100 | 8.0 / 900 | 8.0 / 9.0 |" in text
    assert "pandas 1.5 / 15.0" in text
