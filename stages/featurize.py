"""Stage ``featurize``: clean the validated table, split it, and build the model features.

Cleaning follows params (``drop_duplicates``, ``row_filters``): the defects that ``validate``
reports as warnings are removed here. The split is seeded; the test part is only used once,
for the final metrics. Features come from ``stages.features.build_features``, the function
the packaged model calls at serving time.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages import cli, engine, repeats
from stages.errors import StageError
from stages.features import FeatureError, FeatureSpec, build_features, category_levels
from stages.files import write_json, write_parquet, write_with
from stages.params import FeaturizeParams, Params, load_params
from stages.tracking import stage_run

log = logging.getLogger(__name__)


def clean(frame: pd.DataFrame, params: FeaturizeParams) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop duplicate rows, rows with a missing target, and rows failing ``row_filters``."""
    removed: dict[str, int] = {}
    if params.drop_duplicates:
        keep = ~frame.duplicated()
        removed["duplicates"] = int((~keep).sum())
        frame = frame[keep]
    keep = frame[params.target].notna()
    removed["missing_target"] = int((~keep).sum())
    frame = frame[keep]
    for number, rule in enumerate(params.row_filters, start=1):
        try:
            keep = frame.eval(rule, engine="python").astype(bool)
        except Exception as exc:  # pandas raises many types for a bad expression
            raise StageError(f"featurize.row_filters: '{rule}' failed: {exc}") from exc
        removed[f"row_filter_{number}"] = int((~keep).sum())
        log.info(
            "row filter %d '%s' removes %d row(s)", number, rule, removed[f"row_filter_{number}"]
        )
        frame = frame[keep]
    return frame.reset_index(drop=True), removed


def split(
    frame: pd.DataFrame, test_size: float, seed: int, stratify_by: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded train/test split. Each row's part follows a seeded hash of its content, so a
    row lands in the same part whatever the row order or partitioning (``engine: dask`` splits
    the same way, partition by partition) and rows added later never move others. Stratified
    by a column's values (a random draw of exact size per class) if one is named."""
    n_test = round(len(frame) * test_size)
    if stratify_by is None:
        is_test = in_test_part(frame, test_size, seed)
    else:
        is_test = np.zeros(len(frame), dtype=bool)
        if 0 < n_test < len(frame):
            is_test[_stratified_test_rows(frame[stratify_by], n_test, seed)] = True
    if is_test.all() or not is_test.any():
        raise StageError(f"featurize: {len(frame)} rows cannot be split with test_size={test_size}")
    return (
        frame[~is_test].reset_index(drop=True),
        frame[is_test].reset_index(drop=True),
    )


def in_test_part(frame: pd.DataFrame, test_size: float, seed: int) -> np.ndarray:
    """True for the rows of the test part: each row's values hashed (pandas' 64-bit row hash),
    mixed with the seed, taken as a uniform number in [0, 1), below ``test_size``."""
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    mixed = _mix64(rows ^ _mix64(np.array([seed], dtype=np.uint64)))
    return (mixed >> np.uint64(11)) * 2.0**-53 < test_size


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every input bit changes about half the output bits."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _stratified_test_rows(labels: pd.Series, n_test: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    try:
        _, test = train_test_split(
            np.arange(len(labels)), test_size=n_test, random_state=seed, stratify=labels
        )
    except ValueError as exc:  # e.g. a class with a single row
        raise StageError(f"featurize.stratify: cannot stratify by '{labels.name}': {exc}") from exc
    return test


def make_spec(train: pd.DataFrame, params: FeaturizeParams) -> FeatureSpec:
    """The feature spec: input columns, category levels from the training part, derived features."""
    check_columns(list(train.columns), params)
    return spec_from(
        list(train.columns),
        category_levels(train, params.categorical),
        [c for c in train.columns if train[c].isna().any()],
        params,
    )


def check_columns(columns: list[str], params: FeaturizeParams) -> None:
    unknown = [c for c in [params.target, *params.categorical, *params.drop] if c not in columns]
    if unknown:
        raise StageError(f"featurize: columns named in params are not in the data: {unknown}")


def spec_from(
    columns: list[str], categories: dict, with_missing: list[str], params: FeaturizeParams
) -> FeatureSpec:
    """The feature spec from what the training part holds: its columns, the categorical
    columns' levels, and the columns with missing values."""
    inputs = [c for c in columns if c != params.target and c not in params.drop]
    return FeatureSpec(
        inputs=inputs,
        categories=categories,
        derived=dict(params.derived),
        nullable=[c for c in inputs if c in with_missing],
    )


def featurize(frame: pd.DataFrame, spec: FeatureSpec, target: str) -> pd.DataFrame:
    """Features plus the target column."""
    try:
        features = build_features(frame, spec)
    except FeatureError as exc:
        raise StageError(f"featurize: {exc}") from exc
    return features.assign(**{target: frame[target].to_numpy()})


# ---- engine: dask ---------------------------------------------------------------------------

TEST_COLUMN = "__test__"


def clean_tagged(frame: pd.DataFrame, params: FeaturizeParams, seed: int) -> pd.DataFrame:
    """``clean`` of one partition (duplicates are removed across partitions first), each row
    tagged test or train as ``split`` would (``in_test_part``)."""
    cleaned = _clean_rows(frame, params)[0]
    return cleaned.assign(**{TEST_COLUMN: in_test_part(cleaned, params.test_size, seed)})


def removed_rows(frame: pd.DataFrame, params: FeaturizeParams) -> pd.DataFrame:
    """How many rows of one partition each cleaning rule removes, as a one-row frame."""
    return pd.DataFrame([_clean_rows(frame, params)[1]], dtype="int64")


def _clean_rows(frame: pd.DataFrame, params: FeaturizeParams) -> tuple[pd.DataFrame, dict]:
    return clean(frame, params.model_copy(update={"drop_duplicates": False}))


def featurize_partitioned(params: Params, data: Path, out_dir: Path) -> dict:
    """Clean, split and featurize with Dask: each partition through the same functions."""
    import dask
    import dask.dataframe as dd

    settings = params.featurize
    raw = engine.read_parquet(data)
    check_columns(list(raw.columns), settings)
    deduped = repeats.drop_duplicates(raw) if settings.drop_duplicates else raw
    tagged = deduped.map_partitions(
        clean_tagged,
        settings,
        params.seed,
        meta=raw._meta.assign(**{TEST_COLUMN: pd.Series(dtype=bool)}),
    )
    removed = deduped.map_partitions(removed_rows, settings, meta=removed_rows(raw._meta, settings))
    staging = out_dir.parent / f".{out_dir.name}.tagged"
    rows_in, kept, removed_sums, _ = dask.compute(
        raw.shape[0],
        deduped.shape[0],
        removed.sum(),
        tagged.to_parquet(str(staging), write_index=False, compute=False),
    )
    try:
        counts = write_features(dd.read_parquet(str(staging)), settings, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    totals = {"duplicates": rows_in - kept} if settings.drop_duplicates else {}
    totals |= {name: int(count) for name, count in removed_sums.items()}
    return {"rows_in": rows_in, "rows_removed": totals, **counts}


def write_features(tagged: Any, params: FeaturizeParams, out_dir: Path) -> dict:
    """The spec from the training rows, then both parts featurized partition by partition."""
    import dask

    train_raw = tagged[~tagged[TEST_COLUMN]].drop(columns=TEST_COLUMN)
    test_raw = tagged[tagged[TEST_COLUMN]].drop(columns=TEST_COLUMN)
    levels, missing, n_train, n_test = dask.compute(
        {c: train_raw[c].dropna().astype(str).unique() for c in params.categorical},
        train_raw.isna().any(),
        train_raw.shape[0],
        test_raw.shape[0],
    )
    if n_train == 0 or n_test == 0:
        raise StageError(
            f"featurize: {n_train + n_test} rows cannot be split with test_size={params.test_size}"
        )
    categories = {c: sorted(values.tolist()) for c, values in levels.items()}
    spec = spec_from(list(train_raw.columns), categories, list(missing[missing].index), params)
    for name, part in (("train", train_raw), ("test", test_raw)):
        features = part.map_partitions(featurize, spec, params.target)
        engine.write_parquet(features, out_dir / f"{name}.parquet")
    write_with(spec.to_json, out_dir / "spec.json")
    return {"train_rows": n_train, "test_rows": n_test, "features": len(spec.features)}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="validated Parquet table")
    parser.add_argument("--out-dir", type=Path, required=True, help="train/test/spec go here")
    parser.add_argument("--metrics", type=Path, required=True, help="row counts JSON")
    return parser.parse_args(argv)


def featurize_table(
    raw: pd.DataFrame, params: FeaturizeParams, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, FeatureSpec, dict[str, Any]]:
    """Clean, split and featurize a whole table in memory: train, test, spec and row counts."""
    cleaned, removed = clean(raw, params)
    stratify_by = params.target if params.stratify else None
    train_raw, test_raw = split(cleaned, params.test_size, seed, stratify_by)
    spec = make_spec(train_raw, params)
    train = featurize(train_raw, spec, params.target)
    test = featurize(test_raw, spec, params.target)
    counts = {
        "rows_in": len(raw),
        "rows_removed": removed,
        "train_rows": len(train),
        "test_rows": len(test),
    }
    return train, test, spec, counts


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    all_params = load_params(args.params)
    params = all_params.featurize
    with stage_run(
        "featurize", {"featurize": params, "seed": all_params.seed}, inputs={"raw": args.data}
    ) as run:
        if all_params.engine == "dask":
            with engine.dask_client(all_params.dask):
                counts = featurize_partitioned(all_params, args.data, args.out_dir)
            features = counts.pop("features")
        else:
            train, test, spec, counts = featurize_table(
                pd.read_parquet(args.data), params, all_params.seed
            )
            write_parquet(train, args.out_dir / "train.parquet")
            write_parquet(test, args.out_dir / "test.parquet")
            write_with(spec.to_json, args.out_dir / "spec.json")
            features = len(spec.features)
        write_json(counts, args.metrics)
        run.log_metrics(counts)
        run.log_artifact(args.out_dir / "spec.json")
    log.info(
        "%d train rows, %d test rows, %d features",
        counts["train_rows"],
        counts["test_rows"],
        features,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
