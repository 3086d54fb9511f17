"""One suite, one report, for a table too big for one process (``engine: dask``).

The suite runs on each partition, on the cluster, in the same Great Expectations code as a
whole-table check; the partition results are then merged into one result shaped like GX's:

- row-level expectations (non-null, ranges, sets, ...): counts are summed, ``mostly`` applies
  to the total, example rows keep their row numbers in the whole table;
- schema and type expectations: they pass if they pass on every partition;
- row count and KL divergence: each partition returns the metrics GX computes them from
  (row count; non-null count and histogram or value counts), the sums go to GX's own
  ``_validate``, so the figures are the whole table's;
- compound uniqueness: only rows whose hash on those columns occurs more than once are
  gathered (``mlpipeline.dask.repeats``) and checked by GX; every other row is unique.

A worker runs GX on at most ``GX_ROWS`` rows at a time, so its memory does not grow with the
partition size.
"""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.errors import PipelineError
from mlpipeline.dask import cluster, repeats
from mlpipeline.data.io import read_json
from mlpipeline.quality.suite import CRITICAL
from mlpipeline.quality.validation import parse_suite, run_suite

KL = "expect_column_kl_divergence_to_be_less_than"
ROW_COUNT = "expect_table_row_count_to_be_between"
UNIQUE = "expect_compound_columns_to_be_unique"
GX_ROWS = 250_000  # rows in one GX run on a worker


def split_suite(spec: dict) -> dict[str, list[dict]]:
    """The suite's expectations by how they are evaluated: per partition, from merged
    metrics, or on the rows that may repeat."""
    groups: dict[str, list[dict]] = {"partition": [], "metrics": [], "unique": []}
    for entry in spec["expectations"]:
        kind = entry["type"]
        group = "metrics" if kind in (KL, ROW_COUNT) else "unique" if kind == UNIQUE else None
        groups[group or "partition"].append(entry)
    return groups


def check_partition(frame: pd.DataFrame, entries: list[dict], examples: int) -> list[dict]:
    """GX's results for one partition (the suite's per-partition expectations), one per slice
    of at most ``GX_ROWS`` rows."""
    starts = range(0, max(len(frame), 1), GX_ROWS)
    return [check_slice(frame.iloc[start : start + GX_ROWS], entries, examples) for start in starts]


def check_slice(frame: pd.DataFrame, entries: list[dict], examples: int) -> dict:
    """GX's results for rows numbered from 0."""
    if not entries:
        return {"rows": len(frame), "results": []}
    suite = parse_suite({"name": "partition", "expectations": entries}, "partition")
    result = run_suite(frame.reset_index(drop=True), suite, examples)
    # GX leaves reference cycles that hold copies of the rows: free them now, or a worker's
    # memory grows with every slice until the cycle collector happens to run
    gc.collect()
    return {"rows": len(frame), "results": result["results"]}


def ignored_rows(frame: pd.DataFrame, kwargs: dict) -> int:
    """Rows a compound uniqueness check skips as missing (GX's ``ignore_row_if``)."""
    rule = kwargs.get("ignore_row_if", "all_values_are_missing")
    present = [c for c in kwargs["column_list"] if c in frame]
    if rule == "never" or not present:
        return 0
    missing = frame[present].isna()
    return int(
        (missing.any(axis=1) if rule == "any_value_is_missing" else missing.all(axis=1)).sum()
    )


def partition_metrics(frame: pd.DataFrame, entries: list[dict]) -> dict:
    """What GX computes row count and KL divergence from, for one partition."""
    metrics: dict[str, Any] = {"table.row_count": len(frame)}
    for index, entry in enumerate(entries):
        kwargs = entry["kwargs"]
        if entry["type"] != KL or kwargs["column"] not in frame:
            continue
        values = frame[kwargs["column"]].dropna()
        found: dict[str, Any] = {"column_values.nonnull.count": len(values)}
        bins = kwargs["partition_object"].get("bins")
        if bins is None:
            found["column.value_counts"] = values.value_counts()
        else:
            numeric = pd.to_numeric(values, errors="coerce").dropna().to_numpy()
            found["column.histogram"] = np.histogram(numeric, bins)[0]
            found["below_partition"] = int((numeric < bins[0]).sum())
            found["above_partition"] = int((numeric > bins[-1]).sum())
        metrics[str(index)] = found
    return metrics


# ---- merging -------------------------------------------------------------------------------


def merge(
    spec: dict,
    partitions: list[dict],
    metrics: list[dict],
    unique: list[list[dict]],
    examples: int,
) -> dict:
    """One GX-shaped validation result from the per-partition pieces, in suite order
    (``partitions``: each slice's results; ``unique``: each uniqueness expectation's results
    on the candidate rows and on the others)."""
    groups = split_suite(spec)
    offsets = first_rows([p["rows"] for p in partitions]).tolist()
    merged = [
        merge_results(entry, [p["results"][i] for p in partitions], offsets, examples)
        for i, entry in enumerate(groups["partition"])
    ]
    merged += [
        merge_results(entry, parts, [0] * len(parts), examples)  # rows numbered already
        for entry, parts in zip(groups["unique"], unique, strict=True)
    ]
    merged += [from_metrics(entry, metrics, str(i)) for i, entry in enumerate(groups["metrics"])]
    order = {id(entry): n for n, entry in enumerate(spec["expectations"])}
    entries = groups["partition"] + groups["unique"] + groups["metrics"]
    ranked = sorted(zip(entries, merged, strict=True), key=lambda pair: order[id(pair[0])])
    return {"results": [result for _, result in ranked]}


def merge_results(entry: dict, results: list[dict], offsets: list[int], examples: int) -> dict:
    """One expectation's partition results as one result."""
    base = results[0]
    failed = [r for r in results if not r["success"]]
    if "unexpected_count" not in base["result"]:  # schema and types: all partitions must pass
        chosen = failed[0] if failed else base
        return {**chosen, "expectation_config": base["expectation_config"]}
    errors = [r for r in results if (r.get("exception_info") or {}).get("raised_exception")]
    if errors:
        return {**errors[0], "expectation_config": base["expectation_config"]}
    return {
        "expectation_config": base["expectation_config"],
        "success": None,
        "exception_info": {},
        **summed_counts(entry, [r["result"] for r in results], offsets, examples),
    }


def summed_counts(entry: dict, results: list[dict], offsets: list[int], examples: int) -> dict:
    """Totals of a row-level expectation, ``mostly`` applied to them, and example rows
    (numbered in the whole table: ``offsets``, the first row of each result's part)."""
    elements = sum(r["element_count"] for r in results)
    unexpected = sum(r["unexpected_count"] for r in results)
    missing = sum(r.get("missing_count", 0) for r in results)
    judged = elements - missing
    mostly = entry["kwargs"].get("mostly", 1.0)
    success = unexpected == 0 or (judged > 0 and (judged - unexpected) / judged >= mostly)
    values = [v for r in results for v in r.get("partial_unexpected_list", [])][:examples]
    result: dict[str, Any] = {
        "element_count": elements,
        "unexpected_count": unexpected,
        "unexpected_percent": _percent(unexpected, judged),
        "partial_unexpected_list": values,
        "partial_unexpected_counts": _value_counts(values),
        "partial_unexpected_index_list": [
            offset + row
            for r, offset in zip(results, offsets, strict=True)
            for row in r.get("partial_unexpected_index_list", [])
        ][:examples],
    }
    if "missing_count" in results[0]:
        result |= {
            "missing_count": missing,
            "missing_percent": _percent(missing, elements),
            "unexpected_percent_nonmissing": _percent(unexpected, judged),
            "unexpected_percent_total": _percent(unexpected, elements),
        }
    return {"success": success, "result": result}


def first_rows(sizes: list[int]) -> np.ndarray:
    """The table row number each part starts at."""
    return np.cumsum([0, *sizes[:-1]])


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _value_counts(values: list) -> list[dict]:
    counts = Counter(repr(v) for v in values)
    first = {repr(v): v for v in reversed(values)}
    return [{"count": n, "value": first[k]} for k, n in counts.most_common()]


def from_metrics(entry: dict, metrics: list[dict], key: str) -> dict:
    """GX's own verdict on merged metrics (row count, KL divergence)."""
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    config = ExpectationConfiguration(
        type=entry["type"],
        kwargs=entry["kwargs"],
        meta=entry.get("meta"),
        severity=entry.get("severity", CRITICAL),
    )
    outcome: dict[str, Any] = {
        "expectation_config": {
            "type": entry["type"],
            "kwargs": entry["kwargs"],
            "severity": entry.get("severity", CRITICAL),
        },
        "exception_info": {},
    }
    if entry["type"] == ROW_COUNT:
        summed = {"table.row_count": sum(m["table.row_count"] for m in metrics)}
    else:
        present = [m[key] for m in metrics if key in m]
        if not present:
            message = f"column {entry['kwargs']['column']} is not in the table"
            return {
                **outcome,
                "success": False,
                "result": {},
                "exception_info": {"raised_exception": True, "exception_message": message},
            }
        summed = _sum_metrics(present)
    verdict = config.to_domain_obj()._validate(metrics=summed, runtime_configuration={})
    return {**outcome, "success": bool(verdict["success"]), "result": _plain(verdict["result"])}


def _sum_metrics(parts: list[dict]) -> dict:
    summed: dict[str, Any] = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        if name == "column.value_counts":
            summed[name] = (
                pd.concat(values, axis=1).fillna(0).sum(axis=1).sort_index().rename("count")
            )
        elif name == "column.histogram":
            summed[name] = np.sum(values, axis=0).tolist()
        else:
            summed[name] = int(sum(values))
    return summed


def _plain(value: Any) -> Any:
    """numpy values to plain Python, as GX's own JSON result has them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- on the cluster ------------------------------------------------------------------------


def validate_partitioned(frame: Any, spec: dict, examples: int) -> dict:
    """Validate a Dask dataframe against a suite spec; the merged GX-shaped result."""
    import dask

    groups = split_suite(spec)
    checked = [unique_columns(entry, list(frame.columns)) for entry in groups["unique"]]
    keys = list(dict.fromkeys(checked))  # each column list hashed once
    parts = frame.to_delayed()
    inspect = dask.delayed(inspect_partition, pure=True)
    found = dask.compute(*[inspect(part, groups, keys, examples) for part in parts])
    sizes = [p["rows"] for p in found]
    candidates = {
        key: numbered_candidates(parts, key, [p["hashes"][n] for p in found], sizes, frame._meta)
        for n, key in enumerate(keys)
    }
    unique = [
        unique_results(
            candidates[key], entry, sum(sizes), sum(p["ignored"][n] for p in found), examples
        )
        for n, (entry, key) in enumerate(zip(groups["unique"], checked, strict=True))
    ]
    slices = [s for p in found for s in p["slices"]]
    return merge(spec, slices, [p["metrics"] for p in found], unique, examples)


def unique_columns(entry: dict, columns: list[str]) -> tuple[str, ...]:
    """The columns a uniqueness expectation's rows are hashed on (those present)."""
    present = [c for c in entry["kwargs"]["column_list"] if c in columns]
    return tuple(present or columns)


def inspect_partition(
    frame: pd.DataFrame, groups: dict[str, list[dict]], keys: list[tuple], examples: int
) -> dict:
    """All that validation needs from one partition, in one pass: GX's results per slice,
    row count and KL metrics, row hashes for the uniqueness checks and the rows they skip."""
    return {
        "rows": len(frame),
        "slices": check_partition(frame, groups["partition"], examples),
        "metrics": partition_metrics(frame, groups["metrics"]),
        "hashes": [repeats.row_hashes(frame, list(key)) for key in keys],
        "ignored": [ignored_rows(frame, entry["kwargs"]) for entry in groups["unique"]],
    }


def numbered_candidates(
    parts: list, columns: tuple, hashes: list[np.ndarray], sizes: list[int], meta: pd.DataFrame
) -> pd.DataFrame:
    """The rows that may repeat on ``columns``, indexed by their row number in the table."""
    found = repeats.gather_candidates(parts, list(columns), hashes)
    if found.empty:
        return meta.iloc[:0]
    numbers = first_rows(sizes)[found[repeats.PART].to_numpy()] + found[repeats.POSITION].to_numpy()
    return found.drop(columns=[repeats.PART, repeats.POSITION]).set_axis(pd.Index(numbers))


def unique_results(
    candidates: pd.DataFrame, entry: dict, rows: int, ignored: int, examples: int
) -> list[dict]:
    """A uniqueness expectation's GX result on the candidate rows, and the plain counts of
    the other rows (unique, by their hashes; ``ignored``: rows skipped in the whole table)."""
    suite = parse_suite({"name": "unique", "expectations": [entry]}, "unique")
    found = run_suite(candidates, suite, examples)["results"][0]
    others = {
        "element_count": rows - len(candidates),
        "unexpected_count": 0,
        "missing_count": ignored - ignored_rows(candidates, entry["kwargs"]),
    }
    return [found, {**found, "success": True, "exception_info": {}, "result": others}]


class DaskValidate:
    """``mlpipeline.engine.validate``'s engine on a cluster: the suite per partition, merged."""

    def validate(self, tables: list[str], label: str, suite: Path, examples: int) -> dict:
        return validate_partitioned(read_tables(tables, label), read_json(suite), examples)


def read_tables(tables: list[str], label: str) -> Any:
    """``[NAME=]PATH`` Parquet files or partitioned folders as one lazy Dask dataframe."""
    import dask.dataframe as dd

    named = [spec.split("=", 1) if "=" in spec else ["", spec] for spec in tables]
    frames = []
    for name, source in named:
        if not Path(source).exists():
            raise PipelineError(f"validate: {source} does not exist")
        frame = cluster.read_parquet(source)
        frames.append(frame.assign(**{label: name}) if len(named) > 1 else frame)
    return dd.concat(frames) if len(frames) > 1 else frames[0]
