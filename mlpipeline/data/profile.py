"""What a table says about itself: the task its target implies, and each column's role —
a plain feature, a category, a date, or a column the model must not see (with the reason).
``python -m mlpipeline init`` writes it into ``params.yaml``; a person reviews it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.errors import PipelineError
from mlpipeline.features.transform import date_features, parse_dates

MAX_CLASSES = 20  # a text target with more distinct values is not a classification target
FEW_INTEGERS = 10  # an integer target with at most this many values is a multiclass target
DATE_SHARE = 0.95  # a text column whose values read as ISO 8601 dates this often is a date
SKEWED = 1.0  # a positive target this skewed is learned as log(1 + y)
PROSE_WORDS = 4  # a text of this many words is a sentence, not a name ("Mazda RX4 Wag")
NEAR_UNIQUE = 0.9  # a text column with a distinct value for this share of rows names them
CLOSED_LEVEL_ROWS = 10  # a category all of whose values have this many rows is a closed set
# LightGBM's grouped category splits want min_data_per_group (100) training rows per group;
# a category with fewer rows per value than that is split one value against the rest instead
GROUPED_SPLIT_ROWS = 100
ONE_HOT_DEFAULT = 4  # LightGBM's max_cat_to_onehot
TRAINING_SHARE = 0.8 * 2 / 3  # of the rows with a target: a cross-validation fold's training part


@dataclass(frozen=True)
class Profile:
    """The roles of a table's columns and the task of its target."""

    target: str
    task: str
    categorical: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    drop: dict[str, str] = field(default_factory=dict)  # column -> why the model never sees it
    features: list[str] = field(default_factory=list)  # the model's features, in table order
    target_transform: str = "none"
    rows: int = 0
    rows_without_target: int = 0
    classes: list[str] = field(default_factory=list)
    unseen: dict[str, str] = field(default_factory=dict)  # category -> reject | missing
    kept: dict[str, str] = field(default_factory=dict)  # column -> why the model sees it
    fixed: dict[str, int] = field(default_factory=dict)  # LightGBM params the table calls for


# which partition a row is in is seldom a property of the row, and a new one is a new value
PARTITION_KEY = "partition key: each new partition brings a value the model has not seen"


def profile(
    frame: pd.DataFrame,
    target: str,
    task: str = "auto",
    drop: tuple[str, ...] = (),
    max_categories: int = 50,
    keys: tuple[str, ...] = (),
) -> Profile:
    """Infer the task and every column's role (``drop``: columns a person dropped; ``keys``:
    a partitioned source's partition keys, dropped too: see ``PARTITION_KEY``)."""
    check_columns(frame, target, drop)
    values = frame[target]
    task = infer_task(values.dropna()) if task == "auto" else task
    roles = roles_of(frame, target, drop, keys, max_categories)
    features = [
        f
        for c, r in roles.items()
        if not _is_drop(r)
        for f in (date_features(c) if r == "date" else [c])
    ]
    categorical = [c for c, r in roles.items() if r == "categorical"]
    return Profile(
        target=target,
        task=task,
        categorical=categorical,
        dates=[c for c, r in roles.items() if r == "date"],
        drop={c: r for c, r in roles.items() if _is_drop(r)},
        features=sorted(features, key=_table_order(frame)),
        target_transform=transform_for(values.dropna(), task),
        rows=len(frame),
        rows_without_target=int(values.isna().sum()),
        classes=sorted(map(str, values.dropna().unique())) if task != "regression" else [],
        unseen={c: unseen_choice(frame[c]) for c in categorical},
        kept={c: why_kept(frame[c], r) for c, r in roles.items() if not _is_drop(r)},
        fixed=category_splits(frame.loc[values.notna(), categorical]),
    )


def category_splits(categories: pd.DataFrame) -> dict[str, int]:
    """``{max_cat_to_onehot: n}`` where a category column has too few training rows per value
    for LightGBM's grouped splits (``GROUPED_SPLIT_ROWS``): its values are then split one
    against the rest, which on small tables scores better out of fold and on the test part
    (msleep's 83 rows: test log loss 0.76-0.93 against 1.15-1.55); ``{}`` otherwise."""
    distinct = [
        n
        for n in categories.nunique().tolist()
        if len(categories) * TRAINING_SHARE / max(n, 1) < GROUPED_SPLIT_ROWS
    ]
    widest = max(distinct, default=0)
    return {"max_cat_to_onehot": widest} if widest > ONE_HOT_DEFAULT else {}


def unseen_choice(series: pd.Series) -> str:
    """``reject`` for a closed set (every value has ``CLOSED_LEVEL_ROWS`` rows or more, so
    a new one is likely an error); ``missing`` for an open-ended one (rare values: a new one is
    expected, and scored as LightGBM scores a category it has not seen)."""
    counts = series.dropna().astype(str).value_counts()
    return "reject" if counts.min() >= CLOSED_LEVEL_ROWS else "missing"


def why_kept(series: pd.Series, found: str) -> str:
    """The reason a column is a feature, in a few words."""
    present = series.dropna()
    if found == "date":
        return "a date: year, month, day and day of week"
    if found == "categorical":
        counts = present.astype(str).value_counts()
        return f"a category: {len(counts)} values, the rarest in {counts.min()} row(s)"
    if pd.api.types.is_bool_dtype(series):
        return "a boolean"
    return f"a number: {present.nunique()} distinct values"


def check_columns(frame: pd.DataFrame, target: str, drop: tuple) -> None:
    if target not in frame.columns:
        raise PipelineError(
            f"init --target: '{target}' is not a column of the table (it has: {list(frame)})"
        )
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise PipelineError(f"init --drop: {unknown} are not columns of the table")


def roles_of(
    frame: pd.DataFrame, target: str, drop: tuple, keys: tuple, max_categories: int
) -> dict[str, str]:
    """Each column's role but the target's: dropped by hand, a partition key, or inferred."""
    roles = {c: "dropped by --drop" for c in drop}
    roles |= {c: PARTITION_KEY for c in keys if c not in (target, *drop)}
    return roles | {
        c: role(frame[c], max_categories) for c in frame.columns if c not in (target, *roles)
    }


def _is_drop(found: str) -> bool:
    return found not in ("feature", "categorical", "date")


def _table_order(frame: pd.DataFrame) -> Any:
    position = {c: i for i, c in enumerate(frame.columns)}
    return lambda feature: position[feature.split("__")[0]]


def infer_task(values: pd.Series) -> str:
    """regression, binary or multiclass, from the target's values (missing ones left out)."""
    distinct = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if distinct < 2:
        raise PipelineError(f"init --target: '{values.name}' has {distinct} distinct value(s)")
    if distinct == 2:
        return "binary"
    if numeric and not (_integers(values) and distinct <= FEW_INTEGERS):
        return "regression"
    if distinct <= MAX_CLASSES:
        return "multiclass"
    raise PipelineError(
        f"init --target: '{values.name}' holds {distinct} distinct labels, too many classes "
        f"(at most {MAX_CLASSES}); choose another target, or pass --task"
    )


def _integers(values: pd.Series) -> bool:
    numbers = values.to_numpy(dtype=float)
    return bool(np.all(numbers == np.round(numbers)))


def role(series: pd.Series, max_categories: int) -> str:
    """``feature``, ``categorical``, ``date``, or the reason the model must not see it."""
    present = series.dropna()
    distinct = present.nunique()
    if len(present) == 0:
        return "always missing"
    if distinct == 1:
        value = present.iloc[0]
        return f"constant: always {getattr(value, 'item', lambda: value)()!r}"
    if pd.api.types.is_bool_dtype(series):
        return "feature"
    if pd.api.types.is_numeric_dtype(series):
        if _is_identifier(present):
            return "identifier: a distinct integer per row, in sequence"
        return "feature"
    if pd.api.types.is_datetime64_any_dtype(series) or _reads_as_dates(present):
        return "date"
    if _names_rows(present, distinct):
        if _prose(present):
            return f"free text: {distinct} distinct values in {len(present)} rows"
        return f"identifier: {distinct} distinct texts in {len(present)} rows"
    if distinct <= max_categories:
        return "categorical"
    return (
        f"free text: {distinct} distinct values in {len(present)} rows, more than "
        f"validate.build.max_categories ({max_categories}); list it in dataset.categorical to "
        "use it as a category"
    )


def _names_rows(values: pd.Series, distinct: int) -> bool:
    """A distinct text for (nearly) every row: a name or code, useless as a category (each
    value is seen once) and refused for every new row."""
    return distinct == len(values) or (len(values) >= 20 and distinct >= NEAR_UNIQUE * len(values))


def _prose(values: pd.Series) -> bool:
    """Mostly sentences (four words or more): free text, not names or codes."""
    words = values.astype(str).str.split().str.len()
    return bool((words >= PROSE_WORDS).mean() > 0.5)


def _is_identifier(values: pd.Series) -> bool:
    if not pd.api.types.is_integer_dtype(values) or values.nunique() != len(values):
        return False
    return len(values) > 2 and int(values.max() - values.min()) == len(values) - 1


def _reads_as_dates(values: pd.Series) -> bool:
    sample = values.astype(str).head(1000)
    if not sample.str.contains(r"^\d{4}-\d{2}-\d{2}", regex=True).mean() >= DATE_SHARE:
        return False
    return bool(parse_dates(sample).notna().mean() >= DATE_SHARE)


def transform_for(values: pd.Series, task: str) -> str:
    """log1p for a non-negative, right-skewed regression target; none otherwise."""
    if task != "regression" or len(values) < 3:
        return "none"
    numbers = values.to_numpy(dtype=float)
    if numbers.min() < 0:
        return "none"
    return "log1p" if float(pd.Series(numbers).skew()) > SKEWED else "none"
