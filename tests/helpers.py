"""What tests share: params they build themselves (never the repository's ``params.yaml``)
and small tables."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def make_params(
    source: str,
    target: str,
    features: list[str],
    categorical: list[str] | None = None,
    task: str = "regression",
) -> dict[str, Any]:
    """A complete, valid params tree for a table at ``source``: every section, small search."""
    return {
        "dataset": {
            "source": source,
            "target": target,
            "task": task,
            "categorical": categorical or [],
        },
        "seed": 42,
        "validate": {
            "suite": "expectations/raw.json",
            "features_suite": "expectations/features.json",
        },
        "featurize": {"stratify": task != "regression"},
        "runtime": {"num_threads": 1, "search_jobs": 1},
        "train": {
            "feature_sets": {"all": features},
            "search": {
                "n_calls": 2,
                "n_initial_points": 2,
                "max_rounds": 50,
                "space": {"num_leaves": {"type": "integer", "low": 7, "high": 31}},
            },
        },
        "package": {"model_name": "test-model", "gate": {"thresholds": {}}},
    }


def write_params(path: Path, params: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def regression_table(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A learnable table: ``y`` grows with ``a``, shifted by the text column ``kind``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 10, rows)
    kind = rng.choice(["low", "mid", "high"], rows)
    shift = pd.Series(kind).map({"low": 0.0, "mid": 5.0, "high": 10.0}).to_numpy()
    return pd.DataFrame({"a": a, "kind": kind, "y": 3 * a + shift + rng.normal(0, 0.5, rows)})


def copy_repository(dest: Path) -> Path:
    """The repository's files as they are now — tracked, and new ones git does not ignore —
    copied to ``dest``: no outputs, caches or tracking store."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest
