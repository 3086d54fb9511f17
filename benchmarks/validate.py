"""Benchmark the ``validate`` stage: Great Expectations versus the same checks in bare pandas.

Runs the suite (``expectations/raw.json``) through
``mlpipeline.quality.validation.run_suite`` and through ``bare_checks``, a direct
pandas/numpy implementation of the same expectations, on the reference table and on a table of
``--rows`` rows resampled from it with replacement. Both are timed in the same process,
``--repeat`` times each (interleaved), and the medians compared. Every expectation's outcome
must agree between the two, so the benchmark is also a check that the comparison is fair: any
disagreement is logged and the exit code is 1.

    python -m benchmarks.validate [--rows 5000000] [--repeat 3] [--out FILE.md]

Timings: "GX" is ``run_suite(frame, suite, 5)`` (an ephemeral context, the validation and the
SUMMARY result), with the suite parsed once beforehand; "bare" is ``bare_checks(frame, spec)``.
One untimed warm-up run of each on the reference table comes first. Peak RSS is the process's
high-water mark when each measurement ends, so it never decreases from one row to the next.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import machine, peak_rss_mib, positive, timed, versions
from mlpipeline.quality.validation import build_report, load_suite, run_suite

log = logging.getLogger(__name__)

SUITE = Path("expectations/raw.json")
RAW_DATA = Path("data/raw/data.parquet")
OUT = Path("benchmarks/results_validate.md")
SEED = 20240611
EXAMPLES = 5  # partial_unexpected_count, as the stage's params.yaml default

Check = Callable[["Columns", dict[str, Any]], bool]


# ---------------------------------------------------------------------------------------------
# Data


def default_data_path() -> Path:
    """The pipeline's raw table if it has been ingested, else the diamonds CSV from plotnine."""
    if RAW_DATA.is_file():
        return RAW_DATA
    spec = importlib.util.find_spec("plotnine")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"neither {RAW_DATA} nor the plotnine package is available")
    return Path(spec.origin).parent / "data" / "diamonds.csv"


def load_table(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV table."""
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def resample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows drawn from ``frame`` with replacement: same columns, dtypes and values."""
    picks = np.random.default_rng(seed).integers(0, len(frame), size=rows)
    big = frame.take(picks).reset_index(drop=True)
    if not big.dtypes.equals(frame.dtypes):
        raise AssertionError(f"resampling changed dtypes: {big.dtypes} vs {frame.dtypes}")
    return big


# ---------------------------------------------------------------------------------------------
# The suite in bare pandas/numpy, following GX 1.x's pandas execution engine


class Columns:
    """A frame plus the per-call caches that a hand-written check would share between rules."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._nonnull: dict[str, pd.Series] = {}
        self._duplicated: dict[tuple[tuple[str, ...], str], tuple[int, int]] = {}

    def nonnull(self, column: str) -> pd.Series:
        """The column without its missing values."""
        if column not in self._nonnull:
            series = self.frame[column]
            self._nonnull[column] = series[series.notna()]
        return self._nonnull[column]

    def duplicated(self, columns: Sequence[str], ignore_row_if: str) -> tuple[int, int]:
        """(rows considered, rows whose combination of ``columns`` occurs more than once)."""
        key = (tuple(columns), ignore_row_if)
        if key not in self._duplicated:
            sub = self.frame[list(columns)]
            if ignore_row_if == "all_values_are_missing":
                sub = sub.dropna(how="all")
            elif ignore_row_if == "any_value_is_missing":
                sub = sub.dropna(how="any")
            elif ignore_row_if != "never":
                raise ValueError(f"unknown ignore_row_if: {ignore_row_if!r}")
            self._duplicated[key] = (len(sub), int(sub.duplicated(keep=False).sum()))
        return self._duplicated[key]


def mostly_ok(considered: int, unexpected: int, mostly: float | None) -> bool:
    """GX's ``mostly`` rule: the share of considered rows that pass is at least ``mostly``."""
    if considered == 0:
        return True
    return (considered - unexpected) / considered >= (1.0 if mostly is None else mostly)


def in_range(values: Any, kwargs: dict[str, Any]) -> Any:
    """``min_value <= values <= max_value`` (``<`` if strict); a missing bound is no bound."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise ValueError("min_value and max_value cannot both be None")
    ok = np.ones(np.shape(values), dtype=bool)
    if low is not None:
        ok &= (values > low) if kwargs.get("strict_min") else (values >= low)
    if high is not None:
        ok &= (values < high) if kwargs.get("strict_max") else (values <= high)
    return ok


def relative_entropy(observed: np.ndarray, expected: np.ndarray) -> float:
    """KL divergence D(observed || expected) of the normalised weights (``scipy.stats.entropy``)."""
    p = np.asarray(observed, dtype=float)
    q = np.asarray(expected, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    terms[(p > 0) & (q <= 0)] = np.inf
    return float(terms.sum())


def _python_types(name: str) -> list[Any]:
    """What GX's pandas engine compares a type name with: numpy dtype, pandas type, Python type."""
    found: list[Any] = []
    try:
        found += [np.dtype(name).type, np.dtype(name)]
    except TypeError:
        candidate = getattr(pd, name, None)
        if isinstance(candidate, type):
            found.append(candidate)
    native = {"str": str, "string_types": str, "int": int, "long": int, "float": float}
    native |= {"bool": bool, "bytes": bytes, "complex": complex, "list": list, "dict": dict}
    if name.lower() in native:
        found.append(native[name.lower()])
    return found


def _values_of_types(cols: Columns, column: str, names: Sequence[str], mostly: Any) -> bool:
    """For an ``object`` column GX checks each value's Python type; nulls are skipped."""
    classes = tuple(t for name in names for t in _python_types(name) if isinstance(t, type))
    values = cols.nonnull(column)
    unexpected = int((~values.map(lambda v: isinstance(v, classes)).astype(bool)).sum())
    return mostly_ok(len(values), unexpected, mostly)


def check_columns_ordered(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_table_columns_to_match_ordered_list."""
    return list(cols.frame.columns) == list(kw["column_list"])


def check_row_count(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_table_row_count_to_be_between."""
    return bool(in_range(np.int64(len(cols.frame)), kw))


def check_compound_unique(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_compound_columns_to_be_unique: every row of a repeated combination is unexpected."""
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    considered, unexpected = cols.duplicated(kw["column_list"], ignore)
    return mostly_ok(considered, unexpected, kw.get("mostly"))


def check_not_null(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_values_to_not_be_null (all rows are considered)."""
    series = cols.frame[kw["column"]]
    return mostly_ok(len(series), int(series.isna().sum()), kw.get("mostly"))


def check_in_type_list(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_values_to_be_in_type_list: the column's dtype, or each value if ``object``."""
    dtype = cols.frame[kw["column"]].dtype
    if dtype == np.dtype(object):
        return _values_of_types(cols, kw["column"], kw["type_list"], kw.get("mostly"))
    return any(dtype == t for name in kw["type_list"] for t in _python_types(name))


def check_of_type(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_values_to_be_of_type: the dtype's scalar type, or each value if ``object``."""
    dtype, name = cols.frame[kw["column"]].dtype, kw["type_"]
    if dtype == np.dtype(object) and name not in ("object", "object_", "O"):
        return _values_of_types(cols, kw["column"], [name], kw.get("mostly"))
    return dtype.type in _python_types(name)


def check_between(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_values_to_be_between (nulls are skipped)."""
    values = cols.nonnull(kw["column"]).to_numpy()
    unexpected = len(values) - int(np.count_nonzero(in_range(values, kw)))
    return mostly_ok(len(values), unexpected, kw.get("mostly"))


def check_in_set(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_values_to_be_in_set (nulls are skipped)."""
    values = cols.nonnull(kw["column"])
    unexpected = len(values) - int(values.isin(kw["value_set"]).sum())
    return mostly_ok(len(values), unexpected, kw.get("mostly"))


def check_kl_divergence(cols: Columns, kw: dict[str, Any]) -> bool:
    """expect_column_kl_divergence_to_be_less_than, with a given categorical or binned partition.

    Categorical: observed shares of the non-null values against the partition's weights; values
    outside the partition share ``tail_weight_holdout`` and the partition keeps the rest.
    Continuous: ``np.histogram`` over the bins (last bin closed), plus the shares below the first
    and above the last edge, against the weights scaled by ``1 - tail_weight_holdout`` with half
    the holdout on each tail.
    """
    partition = kw["partition_object"]
    holdout = float(kw.get("tail_weight_holdout", 0) or 0)
    if kw.get("internal_weight_holdout") or "tail_weights" in partition:
        raise NotImplementedError("internal_weight_holdout and tail_weights are not supported")
    values = cols.nonnull(kw["column"])
    if "values" in partition:
        expected = pd.Series(partition["weights"], index=partition["values"], dtype=float)
        observed = values.value_counts() / len(values)
        extra = observed.index.difference(expected.index)
        p = observed.reindex(expected.index.append(extra), fill_value=0.0).to_numpy()
        q = expected.to_numpy()
        if len(extra):
            q = np.concatenate([q * (1 - holdout), np.full(len(extra), holdout / len(extra))])
    else:
        bins = np.asarray(partition["bins"], dtype=float)
        if np.isinf(bins[0]) or np.isinf(bins[-1]):
            raise NotImplementedError("partitions with infinite endpoints are not supported")
        data = values.to_numpy(dtype=float)
        hist = np.histogram(data, bins)[0]
        below, above = np.count_nonzero(data < bins[0]), np.count_nonzero(data > bins[-1])
        p = np.concatenate([[below], hist, [above]]) / len(data)
        weights = np.asarray(partition["weights"], dtype=float) * (1 - holdout)
        q = np.concatenate([[holdout / 2], weights, [holdout / 2]])
    threshold = kw.get("threshold")
    if threshold is None:
        return True
    return bool(relative_entropy(p, q) <= threshold)  # NaN (no values) fails, as in GX


CHECKS: dict[str, Check] = {
    "expect_table_columns_to_match_ordered_list": check_columns_ordered,
    "expect_table_row_count_to_be_between": check_row_count,
    "expect_compound_columns_to_be_unique": check_compound_unique,
    "expect_column_values_to_not_be_null": check_not_null,
    "expect_column_values_to_be_in_type_list": check_in_type_list,
    "expect_column_values_to_be_of_type": check_of_type,
    "expect_column_values_to_be_between": check_between,
    "expect_column_values_to_be_in_set": check_in_set,
    "expect_column_kl_divergence_to_be_less_than": check_kl_divergence,
}


def bare_checks(frame: pd.DataFrame, spec: dict[str, Any]) -> dict[int, bool]:
    """Evaluate the suite's expectations directly; expectation index -> success."""
    cols = Columns(frame)
    results = {}
    for index, entry in enumerate(spec["expectations"]):
        check = CHECKS.get(entry["type"])
        if check is None:
            raise NotImplementedError(f"no bare implementation of {entry['type']}")
        results[index] = check(cols, entry.get("kwargs", {}))
    return results


# ---------------------------------------------------------------------------------------------
# GX's outcome, per expectation of the spec


def _canonical(value: Any) -> Any:
    """JSON-like value with every number a float (GX turns ``0`` into ``0.0``)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _key(kind: str, kwargs: dict[str, Any]) -> str:
    return json.dumps([kind, _canonical(kwargs)], sort_keys=True)


def gx_successes(result: dict, spec: dict[str, Any]) -> tuple[dict[int, bool], list[str]]:
    """GX's success per spec index (matched on type and kwargs), and GX errors as messages."""
    report = build_report(result, SUITE)
    by_key: dict[str, list[dict]] = {}
    for item in report["results"]:
        by_key.setdefault(_key(item["expectation"], item["kwargs"]), []).append(item)
    successes, errors = {}, []
    for index, entry in enumerate(spec["expectations"]):
        matches = by_key.get(_key(entry["type"], entry.get("kwargs", {})))
        if not matches:
            errors.append(f"#{index} {entry['type']}: no result from GX")
            continue
        item = matches.pop(0)
        successes[index] = bool(item["success"])
        if item.get("error"):
            errors.append(f"#{index} {entry['type']}: GX error: {item['error'].splitlines()[0]}")
    return successes, errors


def describe(entry: dict[str, Any]) -> str:
    """An expectation in a few words: its type without ``expect_``, its column(s), ``mostly``."""
    kwargs = entry.get("kwargs", {})
    target = kwargs.get("column") or ("row" if "column_list" in kwargs else "table")
    text = f"{entry['type'].removeprefix('expect_')}({target}"
    return text + (f", mostly={kwargs['mostly']})" if "mostly" in kwargs else ")")


# ---------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Measurement:
    """Timings and outcomes of both implementations on one table."""

    label: str
    rows: int
    gx_seconds: list[float] = field(default_factory=list)
    bare_seconds: list[float] = field(default_factory=list)
    gx_peak_mib: float = 0.0
    bare_peak_mib: float = 0.0
    failed: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)

    @property
    def gx_median(self) -> float:
        return statistics.median(self.gx_seconds)

    @property
    def bare_median(self) -> float:
        return statistics.median(self.bare_seconds)

    @property
    def ratio(self) -> float:
        return self.gx_median / self.bare_median


def fresh_interpreter_seconds(code: str, repeat: int) -> float:
    """Median wall time of ``python -c code`` in a new interpreter."""
    times = []
    for _ in range(repeat):
        seconds, _ = timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))
        times.append(seconds)
    return statistics.median(times)


def measure(
    label: str, frame: pd.DataFrame, suite: Any, spec: dict[str, Any], repeat: int
) -> Measurement:
    """Time GX and the bare checks ``repeat`` times each, interleaved; compare their outcomes."""
    result = Measurement(label, len(frame))
    gx_result: dict = {}
    bare: dict[int, bool] = {}
    for run in range(1, repeat + 1):
        seconds, gx_result = timed(lambda: run_suite(frame, suite, EXAMPLES))
        result.gx_seconds.append(seconds)
        result.gx_peak_mib = peak_rss_mib()
        seconds, bare = timed(lambda: bare_checks(frame, spec))
        result.bare_seconds.append(seconds)
        result.bare_peak_mib = peak_rss_mib()
        log.info(
            "%s run %d/%d: GX %.3f s, bare %.3f s",
            label,
            run,
            repeat,
            result.gx_seconds[-1],
            result.bare_seconds[-1],
        )
    gx, errors = gx_successes(gx_result, spec)
    result.disagreements += errors
    for index, entry in enumerate(spec["expectations"]):
        if index in gx and gx[index] != bare[index]:
            result.disagreements.append(
                f"#{index} {describe(entry)}: GX success={gx[index]}, bare success={bare[index]}"
            )
        elif index in gx and not gx[index]:
            result.failed.append(f"#{index} {describe(entry)} [{entry.get('severity', '?')}]")
    for message in result.disagreements:
        log.error("%s: disagreement: %s", label, message)
    return result


# ---------------------------------------------------------------------------------------------
# Report


def summary_table(measurements: Sequence[Measurement]) -> str:
    """The Markdown table of medians and ratios, one row per table size."""
    lines = [
        "| table | rows | GX median (s) | bare median (s) | GX / bare |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m.label} | {m.rows:,} | {m.gx_median:.3f} | {m.bare_median:.3f} | {m.ratio:.1f}× |"
        for m in measurements
    ]
    return "\n".join(lines)


def details_table(measurements: Sequence[Measurement]) -> str:
    """Every run's time and the peak RSS, per table."""
    lines = [
        "| table | GX runs (s) | bare runs (s) | peak RSS after GX (MiB) | "
        "peak RSS after bare (MiB) |",
        "|---|---|---|---:|---:|",
    ]
    for m in measurements:
        gx_runs = ", ".join(f"{s:.3f}" for s in m.gx_seconds)
        bare_runs = ", ".join(f"{s:.3f}" for s in m.bare_seconds)
        lines.append(
            f"| {m.label} | {gx_runs} | {bare_runs} | {m.gx_peak_mib:,.0f} | "
            f"{m.bare_peak_mib:,.0f} |"
        )
    return "\n".join(lines)


def render(
    measurements: Sequence[Measurement], context: dict[str, str], argv: Sequence[str]
) -> str:
    """The whole results file."""
    command = " ".join(["python -m benchmarks.validate", *argv])
    facts = "\n".join(f"- {key}: {value}" for key, value in context.items())
    outcome = []
    for m in measurements:
        failed = "; ".join(m.failed) or "none"
        outcome.append(f"- {m.label} ({m.rows:,} rows): failed (GX and bare agree): {failed}")
        if m.disagreements:
            outcome += [f"  - **DISAGREEMENT** {d}" for d in m.disagreements]
        else:
            outcome.append("  - every expectation's success agrees between GX and bare")
    return (
        "\n\n".join(
            [
                "# Validation benchmark: Great Expectations vs bare pandas/numpy",
                f"Command: `{command}`",
                summary_table(measurements),
                facts,
                "## Runs\n\n" + details_table(measurements),
                "## Outcomes\n\n" + "\n".join(outcome),
                "## Method\n\n" + (__doc__ or "").split("\n\n", 3)[-1].strip(),
            ]
        )
        + "\n"
    )


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=positive, default=5_000_000, help="resampled table size")
    parser.add_argument("--repeat", type=positive, default=3, help="timed runs per table")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the resampling")
    parser.add_argument("--data", type=Path, help="reference table (default: the raw data)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 if GX and the bare checks disagree on any expectation."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    started = time.perf_counter()

    spec = json.loads(SUITE.read_text())
    suite = load_suite(SUITE)
    data_path = args.data or default_data_path()
    reference = load_table(data_path)
    log.info("suite %s: %d expectations", SUITE, len(spec["expectations"]))
    log.info("reference %s: %d rows", data_path, len(reference))
    imports = import_seconds(args.repeat)
    measurements = measure_both_tables(reference, suite, spec, args)

    context = run_context(spec, (data_path, len(reference)), args, imports)
    context["Benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(measurements, context, argv))
    log.info("wrote %s", args.out)
    print(summary_table(measurements))  # noqa: T201 - the benchmark's result

    disagreements = sum(len(m.disagreements) for m in measurements)
    if disagreements:
        log.error("%d disagreement(s) between GX and the bare checks (see above)", disagreements)
        return 1
    return 0


def import_seconds(repeat: int) -> tuple[float, float]:
    """(interpreter start-up, ``import great_expectations``) in a fresh interpreter, medians."""
    startup = fresh_interpreter_seconds("pass", repeat)
    gx_import = fresh_interpreter_seconds("import great_expectations", repeat)
    log.info("import great_expectations: %.2f s (interpreter start-up %.2f s)", gx_import, startup)
    return startup, gx_import


def measure_both_tables(
    reference: pd.DataFrame, suite: Any, spec: dict[str, Any], args: argparse.Namespace
) -> list[Measurement]:
    """An untimed warm-up of each, then the reference table and the resampled one."""
    log.info("warm-up (untimed): one run of each on the reference table")
    run_suite(reference, suite, EXAMPLES)
    bare_checks(reference, spec)

    measurements = [measure("reference", reference, suite, spec, args.repeat)]
    log.info("resampling %d rows with replacement (seed %d)", args.rows, args.seed)
    big = resample(reference, args.rows, args.seed)
    measurements.append(measure("resampled", big, suite, spec, args.repeat))
    del big
    return measurements


def run_context(
    spec: dict[str, Any],
    data: tuple[Path, int],
    args: argparse.Namespace,
    imports: tuple[float, float],
) -> dict[str, str]:
    """Date, machine, versions, suite, data, repeats and import times (``data``: the
    reference table's path and rows; ``imports``: start-up and GX import seconds)."""
    (data_path, rows), (startup, gx_import) = data, imports
    return {
        "Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "Platform": (machine()),
        "Versions": versions(("great_expectations", "pandas", "numpy")),
        "Suite": (
            f"`{SUITE}`, {len(spec['expectations'])} expectations, sha256 "
            f"{hashlib.sha256(SUITE.read_bytes()).hexdigest()[:12]}"
        ),
        "Data": (
            f"`{data_path}` ({rows:,} rows); resampled with replacement to "
            f"{args.rows:,} rows, seed {args.seed}"
        ),
        "Repeats": f"{args.repeat} timed runs per table and implementation; medians reported",
        "GX import": (
            f"{gx_import:.2f} s in a fresh interpreter (`python -c 'import great_expectations'`, "
            f"median of {args.repeat}); interpreter start-up alone {startup:.2f} s"
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
