"""Drift monitoring: check a new batch against what the model was trained on, before scoring.

``python -m mlpipeline monitor <batch.csv|parquet>`` runs four checks and writes
``reports/monitor/<batch>.json`` and ``.html``:

1. the raw expectation suite (without its row-count, target and distribution checks);
2. per-feature drift of each model feature against the training split, and of each input's
   share of missing values, by the rule of ``mlpipeline.quality.drift`` (a test sized to the batch
   for up to ``monitor.drift.test_max_rows`` rows, a distance beyond);
3. prediction drift: the packaged model's predictions on the batch against its predictions
   on the test split, by the same rule;
4. the share of category values the model was not trained on, per categorical column.

Exit code: 0 no drift, 1 drift beyond the thresholds (the report names the columns), 2 the
batch is invalid (unreadable, missing columns, wrong types, values the suite forbids).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.core.config import DatasetParams, MonitorParams, Params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import read_json, read_source
from mlpipeline.data.names import SPEC_FILE
from mlpipeline.features.prepare import in_test_part
from mlpipeline.features.transform import FeatureError, FeatureSpec, build_features, category_codes
from mlpipeline.quality import html
from mlpipeline.quality.drift import (
    Drift,
    DriftRule,
    compare_missing,
    compare_numbers,
    compare_values,
)
from mlpipeline.quality.validation import build_report, finding, parse_suite, run_suite
from mlpipeline.track.runs import connect, repo_root

log = logging.getLogger(__name__)

NO_DRIFT, DRIFT, INVALID = 0, 1, 2
DISTRIBUTION_CHECKS = ("kl_divergence", "quantile_values", "_mean_", "_median_", "_stdev_")
SKIPPED_CHECKS = ("expect_table_row_count",)
_EPS = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (counts or proportions): how far apart
    two models' predictions on the same rows are (``rollout-report``)."""
    e = np.clip(expected / expected.sum(), _EPS, None)
    a = np.clip(actual / max(actual.sum(), 1), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: np.ndarray, batch: np.ndarray, bins: int) -> float:
    """PSI over the reference's quantile bins (open-ended), of the values that are there."""
    reference, batch = reference[~np.isnan(reference)], batch[~np.isnan(batch)]
    if len(reference) == 0 or len(batch) == 0:
        return 0.0
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    return psi(np.histogram(reference, edges)[0], np.histogram(batch, edges)[0])


def categorical_psi(reference: pd.Series, batch: pd.Series) -> float:
    """PSI over the reference's levels, plus one bin for unseen values."""
    reference, batch = pd.Series(reference).dropna(), pd.Series(batch).dropna()
    if reference.empty or batch.empty:
        return 0.0
    levels = list(reference.unique())

    def counts(values: pd.Series) -> np.ndarray:
        known = values.value_counts().reindex(levels, fill_value=0).to_numpy()
        return np.append(known, len(values) - known.sum())

    return psi(counts(reference), counts(batch))


def drift_rule(params: MonitorParams) -> DriftRule:
    return DriftRule(**params.drift.model_dump())


def comparisons(spec: FeatureSpec) -> int:
    """How many comparisons one batch makes (every feature, every input's missing share, the
    predictions): the Bonferroni divisor of the tests' significance."""
    return len(spec.features) + len(spec.inputs) + 1


def feature_drift(
    reference: pd.DataFrame, batch: pd.DataFrame, spec: FeatureSpec, rule: DriftRule
) -> list[Drift]:
    """Every model feature of the raw ``batch`` against the ``reference`` raw rows: numbers
    as numbers, categories as their text (an unseen value is a cell of its own)."""
    features = {"reference": build_features(reference, spec), "batch": build_features(batch, spec)}
    tests = comparisons(spec)
    drifts = []
    for column in spec.features:
        if column in spec.categories:
            drifts.append(
                compare_values(
                    column,
                    "categorical",
                    _text(reference[column]),
                    _text(batch[column]),
                    rule,
                    tests,
                )
            )
        else:
            before, after = (features[k][column].to_numpy(float) for k in ("reference", "batch"))
            drifts.append(compare_numbers(column, "numeric", before, after, rule, tests))
    return drifts


def _text(values: pd.Series) -> pd.Series:
    """Values as their text (how category levels are kept), missing ones left missing."""
    if isinstance(values.dtype, pd.StringDtype):
        return values
    return values.astype(object).where(values.notna()).map(str, na_action="ignore")


def missing_drift(
    reference: pd.DataFrame, batch: pd.DataFrame, spec: FeatureSpec, rule: DriftRule
) -> list[Drift]:
    """The missing share of every input column, reference against batch."""
    tests = comparisons(spec)
    return [compare_missing(c, reference[c], batch[c], rule, tests) for c in spec.inputs]


def unseen_categories(batch: pd.DataFrame, spec: FeatureSpec) -> list[dict]:
    """Per categorical input: how many of the batch's values the model was not trained on."""
    found = []
    for column, levels in spec.categories.items():
        values = batch[column]
        new = values.notna().to_numpy() & (category_codes(values, levels) < 0)
        found.append(
            {
                "column": column,
                "rows": int(new.sum()),
                "share": round(float(new.mean()) if len(values) else 0.0, 6),
                "examples": sorted(map(str, values[new].unique()))[:5],
            }
        )
    return found


def training_rows(raw: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """The raw rows of the training part, rows without a target included (a batch to score
    has none): the reference a raw batch is compared with."""
    return raw[~in_test_part(raw, test_size, seed)]


def suite_for_batch(spec: dict, leave_out: list[str]) -> dict:
    """The raw suite without row-count checks, distribution checks and missing-share bounds (a
    batch's distributions and missing shares are judged by ``mlpipeline.quality.drift``, sized
    to its rows; a column declared never missing stays so), and without the columns a batch need not
    carry (the target, the dropped columns); the columns in any order."""
    kept = []
    for expectation in spec["expectations"]:
        kwargs = dict(expectation["kwargs"])
        kind = expectation["type"]
        share = kind == "expect_column_values_to_not_be_null" and "mostly" in kwargs
        skipped = kind.startswith(SKIPPED_CHECKS) or is_distribution_check(kind) or share
        if skipped or kwargs.get("column") in leave_out:
            continue
        for key in ("column_list", "column_set"):
            if key in kwargs:
                kwargs[key] = [c for c in kwargs[key] if c not in leave_out]
        if kind == "expect_compound_columns_to_be_unique" and len(kwargs["column_list"]) < 2:
            continue  # GX needs two columns; one left is not a row's identity anyway
        if kind == "expect_table_columns_to_match_ordered_list":
            kind, kwargs = (
                "expect_table_columns_to_match_set",
                {
                    "column_set": kwargs["column_list"],
                    "exact_match": True,
                },
            )
        kept.append({**expectation, "type": kind, "kwargs": kwargs})
    return {**spec, "expectations": kept}


def optional_columns(params: Params) -> list[str]:
    """The columns a batch to score may carry or not: the target and the dropped columns."""
    return [params.featurize.target, *params.featurize.drop]


def check_batch(batch: pd.DataFrame, suite_path: str, leave_out: list[str], examples: int) -> dict:
    """The raw suite's report on a batch of rows to score (see ``suite_for_batch``)."""
    suite = parse_suite(suite_for_batch(read_json(Path(suite_path)), leave_out), suite_path)
    rows = batch.drop(columns=[c for c in leave_out if c in batch.columns])
    return build_report(run_suite(rows, suite, examples), suite_path)


def is_distribution_check(expectation: str) -> bool:
    return any(part in expectation for part in DISTRIBUTION_CHECKS)


def verdict(validation: dict, drifts: list[Drift]) -> tuple[int, list[str]]:
    """Exit code and what drifted (or what made the batch invalid), as readable phrases."""
    failed = [i for i in validation["results"] if not i["success"] and i["severity"] == "critical"]
    invalid = [i for i in failed if not is_distribution_check(i["expectation"])]
    schema = [i for i in invalid if i["expectation"].startswith("expect_table_columns")]
    if invalid:  # a missing column breaks many checks: name the cause, not every symptom
        return INVALID, sorted({_subject(i) for i in (schema or invalid)})
    drifted = {_drift_name(d) for d in drifts if d.drifted}
    drifted |= {_subject(i) for i in failed}
    return (DRIFT if drifted else NO_DRIFT), sorted(drifted)


def _drift_name(drift: Drift) -> str:
    return f"{drift.column} (missing share)" if drift.kind == "missing" else drift.column


def _subject(item: dict) -> str:
    row = finding(item)
    return row.observed if row.column == "(table)" else row.column


def read_batch(source: str, dataset: DatasetParams, suite_path: str) -> pd.DataFrame:
    """Read the batch as ingest reads the source (``dataset.read_options``), with the training
    table's schema (the raw suite's ``meta.dtypes``) instead of inferring it again; an
    unreadable file is invalid data (exit 2)."""
    try:
        dtypes = read_json(Path(suite_path)).get("meta", {}).get("dtypes")
        return read_source(source, "auto", dataset.read_options, dtypes)
    except PipelineError as exc:
        raise PipelineError(str(exc), exit_code=INVALID) from exc


def prediction_drift(
    model_uri: str, batch: pd.DataFrame, predictions: Path, rule: DriftRule, tests: int
) -> Drift:
    """The model's predictions on the batch against its test-set predictions: numbers for
    regression, the predicted classes for classification."""
    import mlflow

    connect(repo_root())  # for a models:/ URI (the run is elsewhere)
    output = mlflow.pyfunc.load_model(model_uri).predict(batch)
    expected = pd.read_csv(predictions)["predicted"]
    name, kind = "(predictions)", "prediction"
    if isinstance(output, pd.DataFrame):  # classification: predicted class + probabilities
        found = output["prediction"].astype(str)
        return compare_values(name, kind, expected.astype(str), found, rule, tests)
    found = np.asarray(output, dtype=float)
    return compare_numbers(name, kind, expected.to_numpy(float), found, rule, tests)


def render_html(report: dict) -> str:
    rows = [
        {
            "status": "fail" if d["drifted"] else "pass",
            "column": d["column"],
            "kind": d["kind"],
            "method": d["method"],
            "value": d["value"],
            "threshold": d["threshold"],
        }
        for d in [*report["features"], report["predictions"], *report["missing"]]
        if d
    ] + [
        {
            "status": "new values" if u["rows"] else "pass",
            "column": u["column"],
            "kind": "unseen categories",
            "method": "share",
            "value": u["share"],
            "threshold": "",
        }
        for u in report["unseen"]
    ]
    summary = {k: report[k] for k in ("batch", "rows", "verdict", "named")}
    summary["suite failures"] = report["validation"]["statistics"]["critical_failures"]
    return html.render(f"Drift report: {report['batch']}", summary, rows, "status")


VERDICTS = {NO_DRIFT: "no drift", DRIFT: "drift", INVALID: "invalid data"}


def drift_report(batch: pd.DataFrame, name: str, params: Params) -> dict:
    """The batch's suite findings, feature, missing-value and prediction drift and unseen
    category values, with the verdict (``exit_code``: 0 no drift, 1 drift, 2 invalid) and
    what it names."""
    spec = FeatureSpec.from_json(Path(params.monitor.features_dir) / SPEC_FILE)
    validation = check_batch(batch, params.validate_.suite, optional_columns(params), 5)
    code, named = verdict(validation, [])
    drifts: list[Drift] = []
    missing: list[Drift] = []
    if code != INVALID:
        drifts, missing = batch_drift(batch, params, spec)
        code, named = verdict(validation, [*drifts, *missing])
    return {
        "batch": name,
        "rows": len(batch),
        "verdict": VERDICTS[code],
        "exit_code": code,
        "named": named,
        "features": [_judged(d) for d in drifts[:-1]],
        "predictions": _judged(drifts[-1]) if drifts else None,
        "missing": [_judged(m) for m in missing],
        "unseen": unseen_categories(batch, spec) if code != INVALID else [],
        "validation": validation,
    }


def _judged(drift: Drift) -> dict:
    return {**asdict(drift), "drifted": drift.drifted}


def batch_drift(
    batch: pd.DataFrame, params: Params, spec: FeatureSpec
) -> tuple[list[Drift], list[Drift]]:
    """Every model feature and the predictions (last) against the training rows, and the
    missing share of every input."""
    monitor = params.monitor
    rule = drift_rule(monitor)
    raw = pd.read_parquet(monitor.raw)
    reference = training_rows(raw, params.featurize.test_size, params.seed)
    try:
        drifts = feature_drift(reference, batch, spec, rule)
    except FeatureError as exc:
        raise PipelineError(f"monitor: {exc}", exit_code=INVALID) from exc
    missing = missing_drift(reference, batch, spec, rule)
    tests = comparisons(spec)
    drifts.append(prediction_drift(monitor.model, batch, Path(monitor.predictions), rule, tests))
    return drifts, missing
