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
import pandas as pd
from sklearn.model_selection import KFold

from stages.features import inverse_target, transform_target
from stages.featurize import clean, featurize, make_spec, split
from stages.ingest import read_table, resolve_source, source_format
from stages.metrics import regression_metrics
from stages.params import load_params
from stages.search import FEATURE_SET, feature_columns, lgb_params, thread_count


def search_points(path: Path, names: list[str]) -> list[dict]:
    """The points the pipeline's search evaluated, in its order, with their native types."""
    trials = pd.read_csv(path)
    return [
        {name: row[name].item() if hasattr(row[name], "item") else row[name] for name in names}
        for _, row in trials.iterrows()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for features and model")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    params = load_params(args.workspace / "params.yaml")
    source, settings, train_cfg = params.ingest, params.featurize, params.train
    if train_cfg.is_classification:
        raise SystemExit("the bare script covers regression tasks (the default data)")

    location = resolve_source(source.source)
    raw = read_table(location, source_format(location, source.format), source.read_options)
    cleaned, _ = clean(raw, settings)
    train_raw, test_raw = split(cleaned, settings.test_size, params.seed)
    spec = make_spec(train_raw, settings)
    train = featurize(train_raw, spec, settings.target)
    test = featurize(test_raw, spec, settings.target)
    args.out.mkdir(parents=True, exist_ok=True)
    train.to_parquet(args.out / "train.parquet", index=False)
    test.to_parquet(args.out / "test.parquet", index=False)

    threads = thread_count(train_cfg.num_threads)
    y = transform_target(train.pop(settings.target).to_numpy(float), train_cfg.target_transform)
    actual = test.pop(settings.target).to_numpy(float)
    folds = list(
        KFold(train_cfg.search.cv_folds, shuffle=True, random_state=params.seed).split(train)
    )
    names = list(train_cfg.search.space)
    points = search_points(args.workspace / "reports/plots/search.csv", names)
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
            lgb_params(point, train_cfg, params.seed, threads),
            datasets[columns],
            num_boost_round=train_cfg.search.max_rounds,
            folds=folds,
            callbacks=[lgb.early_stopping(train_cfg.search.early_stopping_rounds, verbose=False)],
        )[f"valid {train_cfg.search.metric}-mean"]
        results.append((scores[-1], len(scores), point))
    score, rounds, best = min(results, key=lambda r: r[0])
    columns = feature_columns(train_cfg, best, train.columns)
    booster = lgb.train(
        lgb_params(best, train_cfg, params.seed, threads),
        lgb.Dataset(train[columns], label=y, params={"verbosity": -1}),
        num_boost_round=rounds,
    )
    predicted = inverse_target(
        booster.predict(test[columns], num_threads=threads), train_cfg.target_transform
    )
    booster.save_model(str(args.out / "booster.txt"))
    metrics = regression_metrics(actual, predicted)
    summary = {
        "seconds": time.perf_counter() - started,
        "trials": len(points),
        "cv_score": float(score),
        "feature_set": best.get(FEATURE_SET),
        "test": metrics,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))  # noqa: T201 - read by the benchmark
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
