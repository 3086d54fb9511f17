"""Build a Great Expectations suite (as stable JSON) from a trusted reference table.

GX 1.x has no profiler, so this writes one: column order and types, non-null rules, numeric
ranges with a margin, allowed categories, row-count bounds, and distribution references
(quantile bins with weights for numeric columns, category frequencies for categorical ones)
checked with KL divergence and a tail weight. Known, accepted defects get a ``warning`` that
turns ``critical`` past a tolerance. Thresholds come from ``validate.build`` in params.

The output is sorted, rounded and free of ids and timestamps, so rebuilding from the same data
gives the same bytes and a change to it reads well in a pull request.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import SuiteBuildParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import frame_hash

CRITICAL = "critical"
WARNING = "warning"
NUMERIC_TYPES = ["float64", "int64"]
KL_CONFIDENCE = 0.999  # a same-distribution table of the reference's size stays under it


def _round(value: float) -> float:
    """Six significant digits: stable across platforms, readable in a diff."""
    return float(f"{float(value):.6g}")


def _outward(value: float, down: bool) -> float:
    """``_round``, moved outward where rounding would leave ``value`` outside: the outer bin
    edges must hold the reference's own minimum and maximum (-0.04464163 is not above
    -0.0446416)."""
    rounded = _round(value)
    if (rounded > value) if down else (rounded < value):
        step = 10 ** (np.floor(np.log10(abs(value))) - 5)
        rounded = _round(value - step if down else value + step)
    return rounded


def _expectation(kind: str, severity: str = CRITICAL, **kwargs: Any) -> dict:
    return {"type": f"expect_{kind}", "kwargs": kwargs, "severity": severity}


def is_categorical(series: pd.Series, max_categories: int) -> bool:
    """Text or categorical columns with few distinct values."""
    numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
    return not numeric and series.nunique(dropna=True) <= max_categories


def boolean_expectations(name: str, series: pd.Series, build: SuiteBuildParams) -> list[dict]:
    """Booleans (with or without missing values) and the share of each value. No type check:
    GX's reads pandas' nullable ``boolean`` column as failing; the value set refuses text."""
    frequencies = series.dropna().astype(bool).value_counts().sort_index()
    values = [bool(v) for v in frequencies.index]
    partition = {"values": values, "weights": _weights(frequencies.to_numpy())}
    return [
        _expectation("column_values_to_be_in_set", column=name, value_set=[False, True]),
        _kl(name, partition, build, len(series)),
    ]


def table_expectations(frame: pd.DataFrame, build: SuiteBuildParams) -> list[dict]:
    """Column names in order, and row-count bounds relative to the reference."""
    low, high = build.row_count_range
    expectations = [
        _expectation("table_columns_to_match_ordered_list", column_list=list(frame.columns)),
        _expectation(
            "table_row_count_to_be_between",
            min_value=int(len(frame) * low),
            max_value=int(np.ceil(len(frame) * high)),
        ),
    ]
    columns = list(frame.columns)
    if len(columns) < 2:  # GX's compound check needs two columns
        return expectations
    expectations.append(_expectation("compound_columns_to_be_unique", WARNING, column_list=columns))
    if build.duplicate_tolerance is not None:  # duplicates stop the pipeline only if asked
        expectations += [
            _expectation(
                "compound_columns_to_be_unique",
                column_list=columns,
                mostly=_round(1 - build.duplicate_tolerance),
            ),
        ]
    return expectations


def numeric_expectations(name: str, series: pd.Series, build: SuiteBuildParams) -> list[dict]:
    """Type, range with a margin, positivity (if asked), and a binned distribution."""
    values = series.dropna().to_numpy(dtype=float)
    low, high = values.min(), values.max()
    span = (high - low) or abs(high) or 1.0
    min_value = low - build.range_margin * span
    if low >= 0:
        min_value = max(min_value, 0.0)
    out = [
        _expectation("column_values_to_be_in_type_list", column=name, type_list=NUMERIC_TYPES),
        _expectation(
            "column_values_to_be_between",
            column=name,
            min_value=_round(min_value),
            max_value=_round(high + build.range_margin * span),
        ),
    ]
    if name in build.positive:
        out += [
            _expectation(
                "column_values_to_be_between", WARNING, column=name, min_value=0, strict_min=True
            ),
            _expectation(
                "column_values_to_be_between",
                column=name,
                min_value=0,
                strict_min=True,
                mostly=_round(1 - build.positive_tolerance),
            ),
        ]
    quantiles = np.quantile(values, np.linspace(0, 1, build.bins + 1))
    inner = [_round(q) for q in quantiles[1:-1]]
    edges = np.unique([_outward(low, down=True), *inner, _outward(high, down=False)])
    if len(edges) >= 2:
        counts = np.histogram(values, bins=edges)[0]
        partition = {"bins": edges.tolist(), "weights": _weights(counts)}
        out.append(_kl(name, partition, build, len(values)))
    return out


def categorical_expectations(
    name: str, series: pd.Series, build: SuiteBuildParams, open_ended: bool = False
) -> list[dict]:
    """Allowed values and their frequencies. For an open-ended category (``open_ended``: the
    model scores a new value as LightGBM scores an unseen category), a value outside the set
    is a warning, not a stop."""
    frequencies = series.dropna().astype(str).value_counts().sort_index()
    values = frequencies.index.tolist()
    severity = WARNING if open_ended else CRITICAL
    out = [_expectation("column_values_to_be_in_set", severity, column=name, value_set=values)]
    if not isinstance(series.dtype, pd.CategoricalDtype):
        out.insert(0, _expectation("column_values_to_be_of_type", column=name, type_="str"))
    partition = {"values": values, "weights": _weights(frequencies.to_numpy())}
    out.append(_kl(name, partition, build, int(series.notna().sum())))
    return out


def null_expectations(name: str, series: pd.Series, build: SuiteBuildParams) -> list[dict]:
    """Never missing, if the reference has no missing value; else missing in at most its
    share plus ``null_tolerance`` of the rows (``mostly``)."""
    share = float(series.isna().mean())
    if share == 0:
        return [_expectation("column_values_to_not_be_null", column=name)]
    if share == 1:
        return []
    mostly = _round(max(0.0, 1 - share - build.null_tolerance))
    return [_expectation("column_values_to_not_be_null", column=name, mostly=mostly)]


def never_missing(suite: dict) -> list[str]:
    """The columns a suite declares never missing (a critical not-null expectation without a
    ``mostly`` below 1): what the served model refuses missing."""
    return sorted(
        entry["kwargs"]["column"]
        for entry in suite["expectations"]
        if entry["type"] == "expect_column_values_to_not_be_null"
        and entry.get("severity", CRITICAL) == CRITICAL
        and entry["kwargs"].get("mostly", 1.0) >= 1.0
    )


def _weights(counts: np.ndarray) -> list[float]:
    weights = [_round(c) for c in counts / counts.sum()]
    weights[-1] = _round(1 - sum(weights[:-1]))  # rounding must not break "sums to 1"
    return weights


def kl_threshold(build: SuiteBuildParams, cells: int, rows: int) -> float:
    """``build.kl_threshold``, or more where the reference is small: the KL divergence that a
    table of ``rows`` rows drawn from the reference's own distribution stays under with
    probability ``KL_CONFIDENCE`` (``2 n KL`` is chi-square with ``cells - 1`` degrees of
    freedom: the G-test). For diamonds' 53,940 rows it is 0.0003, so 0.05 holds; for 80 rows
    and 10 bins, 0.17."""
    from scipy.stats import chi2

    sized = chi2.ppf(KL_CONFIDENCE, max(cells - 1, 1)) / (2 * max(rows, 1))
    return _round(max(build.kl_threshold, sized + build.tail_weight))


def _kl(name: str, partition: dict, build: SuiteBuildParams, rows: int) -> dict:
    return _expectation(
        "column_kl_divergence_to_be_less_than",
        column=name,
        partition_object=partition,
        threshold=kl_threshold(build, len(partition["weights"]), rows),
        tail_weight_holdout=build.tail_weight,
    )


def build_suite(
    frame: pd.DataFrame,
    name: str,
    build: SuiteBuildParams,
    open_ended: Collection[str] = (),
    unused: Collection[str] = (),
) -> dict:
    """The suite describing ``frame``, as a JSON-ready dict (``open_ended``: categorical
    columns whose new values are scored, not refused; ``unused``: columns the model never
    sees, ``dataset.drop`` — checked for presence and missing values only, as the range or
    distribution of an identifier or free text says nothing of the data's fitness). Its
    ``meta.dtypes`` is the table's schema, with which a new batch is read."""
    unknown = [c for c in build.positive if c not in frame.columns]
    if unknown:
        raise PipelineError(
            f"validate.build.positive names column(s) the data does not have: {unknown} "
            f"(the data has: {list(frame.columns)}): fix validate.build.positive"
        )
    expectations = table_expectations(frame, build)
    for column in frame.columns:
        series = frame[column]
        expectations += null_expectations(column, series, build)
        if series.isna().all() or column in unused:
            continue
        if pd.api.types.is_bool_dtype(series):
            expectations += boolean_expectations(column, series, build)
        elif is_categorical(series, build.max_categories):
            expectations += categorical_expectations(column, series, build, column in open_ended)
        elif pd.api.types.is_numeric_dtype(series):
            expectations += numeric_expectations(column, series, build)
    return {
        "name": name,
        "meta": {
            "built_by": "python -m mlpipeline build-suite",
            "reference": {"rows": len(frame), "content_sha256": frame_hash(frame)},
            "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            "build_params": build.model_dump(),
        },
        "expectations": expectations,
    }


def to_json(suite: dict) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(suite, indent=2, sort_keys=True) + "\n"
