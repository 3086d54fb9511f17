"""The pipeline's essential work as one plain script: the yardstick of ``python -m benchmarks``.

In one process, with the libraries called directly: read the source table, clean, split and
build the features (the pipeline's own pure pandas functions, so the rows and columns are the
same), write them as Parquet, run ``lightgbm.cv`` on exactly the points the pipeline's search
evaluated (read from its ``reports/plots/search.csv``, same params, folds and early stopping),
refit the best one, score the test part and write the booster as text. Nothing else: no
validation, tracking, packaging, DVC or stage processes.

    python -m benchmarks.bare --workspace DIR   (a workspace where ``dvc repro`` has run)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from mlpipeline.core.config import Params, TrainParams, load_params
from mlpipeline.data.io import read_source
from mlpipeline.features.prepare import clean, featurize, make_spec, split
from mlpipeline.features.transform import inverse_target, transform_target
from mlpipeline.model.boosting import FEATURE_SET, feature_columns, model_params, thread_count
from mlpipeline.model.metrics import regression_metrics


def search_points(path: Path, names: list[str]) -> list[dict]:
    """The points the pipeline's search evaluated, in its order, with their native types."""
    trials = pd.read_csv(path)
    return [
        {name: row[name].item() if hasattr(row[name], "item") else row[name] for name in names}
        for _, row in trials.iterrows()
    ]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for features and model")
    return parser.parse_args(argv)


def write_features(params: Params, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the source, clean, split and featurize it; write both parts as Parquet."""
    source, settings = params.ingest, params.featurize
    raw = read_source(source.source, source.format, source.read_options)
    cleaned, _ = clean(raw, settings)
    train_raw, test_raw = split(cleaned, settings.test_size, params.seed)
    spec = make_spec(train_raw, settings)
    train = featurize(train_raw, spec, settings.target)
    test = featurize(test_raw, spec, settings.target)
    out.mkdir(parents=True, exist_ok=True)
    train.to_parquet(out / "train.parquet", index=False)
    test.to_parquet(out / "test.parquet", index=False)
    return train, test


def cross_validate_points(
    train: pd.DataFrame, y: np.ndarray, params: Params, threads: int, points: list[dict]
) -> list[tuple[float, int, dict]]:
    """``lgb.cv`` on each point (one Dataset per feature set): (score, rounds, point) each."""
    train_cfg, search = params.train, params.train.search
    folds = list(KFold(search.cv_folds, shuffle=True, random_state=params.seed).split(train))
    datasets: dict[tuple, lgb.Dataset] = {}
    results = []
    for point in points:
        columns = tuple(feature_columns(train_cfg, point, train.columns))
        if columns not in datasets:
            datasets[columns] = lgb.Dataset(
                train[list(columns)],
                label=y,
                free_raw_data=False,
                params={"feature_pre_filter": False, "verbosity": -1, "num_threads": threads},
            )
        scores = lgb.cv(
            model_params(point, train_cfg, params.seed, threads),
            datasets[columns],
            num_boost_round=search.max_rounds,
            folds=folds,
            callbacks=[lgb.early_stopping(search.early_stopping_rounds, verbose=False)],
        )[f"valid {search.metric}-mean"]
        results.append((scores[-1], len(scores), point))
    return results


def refit_and_predict(
    train: pd.DataFrame,
    y: np.ndarray,
    test: pd.DataFrame,
    best: tuple[dict, int],
    train_cfg: TrainParams,
    seed: int,
    threads: int,
) -> tuple[lgb.Booster, np.ndarray]:
    """The best point refit on the whole training part; its predictions on the test part."""
    point, rounds = best
    columns = feature_columns(train_cfg, point, train.columns)
    booster = lgb.train(
        model_params(point, train_cfg, seed, threads),
        lgb.Dataset(train[columns], label=y, params={"verbosity": -1}),
        num_boost_round=rounds,
    )
    predicted = inverse_target(
        booster.predict(test[columns], num_threads=threads), train_cfg.target_transform
    )
    return booster, predicted


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.perf_counter()
    params = load_params(args.workspace / "params.yaml")
    target, train_cfg = params.featurize.target, params.train
    if train_cfg.is_classification:
        raise SystemExit("the bare script covers regression tasks (the default data)")
    train, test = write_features(params, args.out)

    threads = thread_count(params.runtime.num_threads)
    y = transform_target(train.pop(target).to_numpy(float), train_cfg.target_transform)
    actual = test.pop(target).to_numpy(float)
    names = list(train_cfg.search.space)
    points = search_points(args.workspace / "reports/plots/search.csv", names)
    results = cross_validate_points(train, y, params, threads, points)
    score, rounds, best = min(results, key=lambda r: r[0])
    booster, predicted = refit_and_predict(
        train, y, test, (best, rounds), train_cfg, params.seed, threads
    )
    booster.save_model(str(args.out / "booster.txt"))
    summary = {
        "seconds": time.perf_counter() - started,
        "trials": len(points),
        "cv_score": float(score),
        "feature_set": best.get(FEATURE_SET),
        "test": regression_metrics(actual, predicted),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))  # noqa: T201 - read by the benchmark
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
