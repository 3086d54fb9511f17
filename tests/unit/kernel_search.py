"""A small search and its final booster, printed as JSON: run by ``test_kernels`` in child
processes, each started under other numerical kernels (``NPY_DISABLE_CPU_FEATURES``,
``OPENBLAS_CORETYPE`` must be set before numpy loads).

    python -m tests.unit.kernel_search [ACQ_OPTIMIZER]
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pandas as pd

from mlpipeline.core.config import TrainParams
from mlpipeline.model.boosting import model_params
from mlpipeline.model.search import best_trial, run_search, trial_runner

SEED = 11


def table(rows: int = 600) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=[f"x{i}" for i in range(5)])
    frame["kind"] = pd.Categorical(rng.choice(["a", "b", "c"], rows))
    y = frame.x0 * 2 + np.sin(3 * frame.x1) + (frame.kind == "b") + rng.normal(0, 0.5, rows)
    return frame, y.to_numpy()


def params(acq_optimizer: str) -> TrainParams:
    real = {"type": "real", "prior": "log-uniform"}
    return TrainParams.model_validate(
        {
            "feature_sets": {"all": ["x0", "x1", "x2", "x3", "x4", "kind"], "few": ["x0", "x1"]},
            "search": {
                "n_calls": 14,
                "n_initial_points": 4,
                "batch_size": 2,
                "acq_optimizer": acq_optimizer,
                "early_stopping_rounds": 10,
                "max_rounds": 80,
                "space": {
                    "learning_rate": {**real, "low": 0.03, "high": 0.3},
                    "num_leaves": {"type": "integer", "low": 4, "high": 64, "prior": "log-uniform"},
                    "min_child_samples": {"type": "integer", "low": 5, "high": 60},
                    "feature_fraction": {"type": "real", "low": 0.5, "high": 1.0},
                    "lambda_l2": {**real, "low": 0.001, "high": 10.0},
                    "feature_set": {"type": "categorical", "categories": ["all", "few"]},
                },
            },
        }
    )


def main(acq_optimizer: str = "sampling") -> dict:
    import lightgbm as lgb

    frame, y = table()
    train = params(acq_optimizer)
    trials = run_search(trial_runner(frame, y, train, SEED, 1, 1), train.search, SEED)
    best = best_trial(trials)
    columns = train.feature_sets[best.point["feature_set"]]
    booster = lgb.train(
        model_params(best.point, train, SEED, 1),
        lgb.Dataset(frame[columns], label=y),
        num_boost_round=best.best_iteration,
    )
    return {
        "trials": [[t.point, t.score, t.best_iteration] for t in trials],
        "best": best.number,
        "booster_md5": hashlib.md5(booster.model_to_string().encode()).hexdigest(),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
