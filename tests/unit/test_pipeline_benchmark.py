"""The overall benchmark's parsing and report (the measurements run in ``python -m benchmarks``)."""

from __future__ import annotations

from benchmarks.pipeline import RUNNING, heavy_imports, report

TRACE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |       scipy.special
import time:       200 |     300000 |     scipy
import time:       500 |     900000 |   sklearn
import time:       400 |    1500000 | lightgbm
import time:       100 |        100 |   mlflow.utils
import time:       300 |     700000 | mlflow
import time:        50 |         50 | json
"""


def test_heavy_imports_count_nested_libraries_once():
    assert heavy_imports(TRACE) == {"lightgbm": 1.5, "mlflow": 0.7}


def test_dvc_stage_lines_are_recognised():
    assert RUNNING.search("Running stage 'validate_features':").group(1) == "validate_features"


def _results() -> dict:
    timings = [0.004, 0.005, 0.006]
    return {
        "end_to_end": {
            "pipeline": 110.0,
            "bare": 100.0,
            "runs": [110.0],
            "bare_runs": [100.0],
            "stages": {"ingest": 3.0, "train": 90.0},
            "trials": 16,
            "rmse": (509.4, 509.4),
        },
        "noop": {"pipeline": 2.0, "trivial": 1.0},
        "params": {"seconds": 12.0, "ran": ["package"]},
        "startup": {
            "pandas": 0.6,
            "stages": {
                "ingest": {"seconds": 0.9, "heavy": {}, "unused": {}},
                "validate": {
                    "seconds": 2.0,
                    "heavy": {"lightgbm": 1.5},
                    "unused": {"lightgbm": 1.5},
                },
            },
        },
        "tracking": {"on": 21.0, "off": 20.0, "calls": 6},
        "threads": {
            "seconds": {"1": 3.0, "2": 2.0, "LightGBM default": 2.2},
            "project": "2",
            "rounds": 700,
        },
        "serving": {key: timings for key in ("server_1", "server_k", "pyfunc_1", "pyfunc_k")},
    }


def test_report_states_each_target_and_whether_it_is_met():
    text = report(_results(), {"date": "today"})
    assert (
        "| 1. end to end | `dvc repro --force` 110.0 s | bare script 100.0 s | 1.10 | ≤ 1.15: met |"
        in text
    )
    assert "| 2.00 | ≤ 1.5: not met |" in text
    assert "ran: package" in text
    assert "1.50 s (≤ 1: not met)" in text  # validate imports lightgbm it does not use
    assert "| 1.050 | ≤ 1.05: met |" in text
    threads = "| project's setting (2) 2.00 s | 1 3.00 s, LightGBM default 2.20 s | 1.00 |"
    assert threads + " ≤ 1.05: met |" in text  # the project's setting is timed once, as "2"
