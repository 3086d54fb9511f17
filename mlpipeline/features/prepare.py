"""Preparing the validated table for training: clean it, split it, build the features.

Cleaning follows params (``drop_duplicates``, ``row_filters``): the defects that ``validate``
reports as warnings are removed here. Each row's part (train or test) follows a seeded hash
of its values, so row order and partitioning do not matter and rows added later never move
others; ``featurize.stratify`` draws an exact share of each class instead. Features come from
``mlpipeline.features.transform.build_features``, the function the packaged model calls at
serving time, with category levels learned on the training part only.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import FeaturizeParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.features.transform import FeatureError, FeatureSpec, build_features, category_levels

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
            raise PipelineError(f"featurize.row_filters: '{rule}' failed: {exc}") from exc
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
        raise PipelineError(
            f"featurize: {len(frame)} rows cannot be split with test_size={test_size}"
        )
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
    """Test rows drawn per class. A class of a single row cannot be in both parts: its rows
    stay in the training part (so the model knows the class) and a warning names them."""
    from sklearn.model_selection import train_test_split

    counts = labels.value_counts()
    single = counts.index[counts < 2].tolist()
    if single:
        log.warning(
            "featurize.stratify: class(es) %s of '%s' have a single row; it stays in the "
            "training part",
            single[:5],
            labels.name,
        )
    rows = np.flatnonzero(~labels.isin(single).to_numpy())
    try:
        _, test = train_test_split(
            rows, test_size=n_test, random_state=seed, stratify=labels.iloc[rows]
        )
    except ValueError as exc:  # e.g. fewer test rows than classes
        raise PipelineError(
            f"featurize.stratify: cannot stratify by '{labels.name}': {exc}; set "
            "featurize.stratify: false or change featurize.test_size"
        ) from exc
    return test


def make_spec(
    train: pd.DataFrame, params: FeaturizeParams, never_missing: Collection[str] = ()
) -> FeatureSpec:
    """The feature spec: input columns, category levels from the training part, date and
    derived features, and the inputs that may be missing (all but ``never_missing``: what the
    raw suite declares never null)."""
    check_columns(train.dtypes, params)
    return spec_from(
        list(train.columns), category_levels(train, params.categorical), never_missing, params
    )


def check_columns(dtypes: pd.Series, params: FeaturizeParams) -> None:
    """Every column params name is in the data, and every text input has a role; else the
    error names the key to change."""
    named = {
        "dataset.target": [params.target],
        "dataset.categorical": params.categorical,
        "dataset.drop": params.drop,
        "dataset.dates": params.dates,
    }
    for key, columns in named.items():
        unknown = [c for c in columns if c not in dtypes.index]
        if unknown:
            raise PipelineError(
                f"{key} names column(s) the data does not have: {unknown} (the data has: "
                f"{list(dtypes.index)}): fix {key}, or run `python -m mlpipeline init`"
            )
    text = [c for c in plain_inputs(list(dtypes.index), params) if is_text(dtypes[c])]
    if text:
        raise PipelineError(
            f"column(s) {text} hold text or dates but are in none of dataset.categorical, "
            "dataset.dates or dataset.drop: add each to one of them (`python -m mlpipeline "
            "init` proposes which)"
        )


def is_text(dtype: Any) -> bool:
    """Neither a number nor a boolean (text, dates, categories): what an input column can be
    only with a role in the dataset section."""
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def plain_inputs(columns: list[str], params: FeaturizeParams) -> list[str]:
    """The plain (numeric) inputs: the columns without the target, the dropped ones and
    those with a role (categorical, dates), in table order."""
    skip = {params.target, *params.drop, *params.categorical, *params.dates}
    return [c for c in columns if c not in skip]


def spec_from(
    columns: list[str], categories: dict, never_missing: Collection[str], params: FeaturizeParams
) -> FeatureSpec:
    """The feature spec from the table's columns and the categorical columns' levels."""
    inputs = [c for c in columns if c != params.target and c not in params.drop]
    return FeatureSpec(
        inputs=inputs,
        categories=categories,
        derived=dict(params.derived),
        nullable=[c for c in inputs if c not in never_missing],
        dates=[c for c in inputs if c in params.dates],
        ignored=[c for c in columns if c not in inputs],
    )


def featurize(frame: pd.DataFrame, spec: FeatureSpec, target: str) -> pd.DataFrame:
    """Features plus the target column."""
    try:
        features = build_features(frame, spec)
    except FeatureError as exc:
        raise PipelineError(f"featurize: {exc}") from exc
    return features.assign(**{target: frame[target].to_numpy()})


@dataclass(frozen=True)
class Prepared:
    """A table ready for training: the train and test features, the test part's raw rows
    (whole, as a scoring job sends them), the feature spec and the row counts."""

    train: pd.DataFrame
    test: pd.DataFrame
    test_rows: pd.DataFrame
    spec: FeatureSpec
    counts: dict[str, Any]


def featurize_table(
    raw: pd.DataFrame, params: FeaturizeParams, seed: int, never_missing: Collection[str] = ()
) -> Prepared:
    """Clean, split and featurize a whole table in memory."""
    check_columns(raw.dtypes, params)
    cleaned, removed = clean(raw, params)
    stratify_by = params.target if params.stratify else None
    train_raw, test_raw = split(cleaned, params.test_size, seed, stratify_by)
    spec = make_spec(train_raw, params, never_missing)
    train = featurize(train_raw, spec, params.target)
    test = featurize(test_raw, spec, params.target)
    counts = {
        "rows_in": len(raw),
        "rows_removed": removed,
        "train_rows": len(train),
        "test_rows": len(test),
    }
    return Prepared(train, test, test_raw, spec, counts)
