"""Stage ``featurize``: clean the validated table, split it, and build the model features.

Cleaning follows params (``drop_duplicates``, ``row_filters``): the defects that ``validate``
reports as warnings are removed here. The split is seeded; the test part is only used once,
for the final metrics. Features come from ``stages.features.build_features``, the function
the packaged model calls at serving time.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stages import cli
from stages.errors import StageError
from stages.features import FeatureError, FeatureSpec, build_features, category_levels
from stages.files import write_json, write_parquet, write_with
from stages.params import FeaturizeParams, load_params
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
    """A seeded random train/test split, stratified by a column's values if one is named."""
    n_test = round(len(frame) * test_size)
    if n_test == 0 or n_test == len(frame):
        raise StageError(f"featurize: {len(frame)} rows cannot be split with test_size={test_size}")
    if stratify_by is None:
        test = np.random.default_rng(seed).permutation(len(frame))[:n_test]
    else:
        test = _stratified_test_rows(frame[stratify_by], n_test, seed)
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(frame)), test)
    return frame.iloc[train].reset_index(drop=True), frame.iloc[test].reset_index(drop=True)


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
    unknown = [c for c in [params.target, *params.categorical, *params.drop] if c not in train]
    if unknown:
        raise StageError(f"featurize: columns named in params are not in the data: {unknown}")
    inputs = [c for c in train.columns if c != params.target and c not in params.drop]
    return FeatureSpec(
        inputs=inputs,
        categories=category_levels(train, params.categorical),
        derived=dict(params.derived),
        nullable=[c for c in inputs if train[c].isna().any()],
    )


def featurize(frame: pd.DataFrame, spec: FeatureSpec, target: str) -> pd.DataFrame:
    """Features plus the target column."""
    try:
        features = build_features(frame, spec)
    except FeatureError as exc:
        raise StageError(f"featurize: {exc}") from exc
    return features.assign(**{target: frame[target].to_numpy()})


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="validated Parquet table")
    parser.add_argument("--out-dir", type=Path, required=True, help="train/test/spec go here")
    parser.add_argument("--metrics", type=Path, required=True, help="row counts JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    all_params = load_params(args.params)
    params = all_params.featurize
    raw = pd.read_parquet(args.data)
    cleaned, removed = clean(raw, params)
    stratify_by = params.target if params.stratify else None
    train_raw, test_raw = split(cleaned, params.test_size, all_params.seed, stratify_by)
    spec = make_spec(train_raw, params)
    train, test = (
        featurize(train_raw, spec, params.target),
        featurize(test_raw, spec, params.target),
    )
    counts = {
        "rows_in": len(raw),
        "rows_removed": removed,
        "train_rows": len(train),
        "test_rows": len(test),
    }
    with stage_run(
        "featurize", {"featurize": params, "seed": all_params.seed}, inputs={"raw": args.data}
    ) as run:
        write_parquet(train, args.out_dir / "train.parquet")
        write_parquet(test, args.out_dir / "test.parquet")
        write_with(spec.to_json, args.out_dir / "spec.json")
        write_json(counts, args.metrics)
        run.log_metrics(counts)
        run.log_artifact(args.out_dir / "spec.json")
    log.info("%d train rows, %d test rows, %d features", len(train), len(test), len(spec.features))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
