"""Drift monitoring: check a new batch against what the model was trained on, before scoring.

``python -m mlpipeline monitor <batch.csv|parquet>`` runs three checks and writes
``reports/monitor/<batch>.json`` and ``.html``:

1. the raw expectation suite (without its row-count and target checks);
2. per-feature drift: the population stability index (PSI) of each model feature against the
   training split (quantile bins for numbers, levels for categories);
3. prediction drift: PSI of the packaged model's predictions on the batch against its
   predictions on the test split.

Exit code: 0 no drift, 1 drift beyond the thresholds (the report names the columns), 2 the
batch is invalid (unreadable, missing columns, wrong types, values the suite forbids).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.config import DatasetParams, MonitorParams, Params
from mlpipeline.errors import PipelineError
from mlpipeline.expectations import html
from mlpipeline.expectations.validation import build_report, finding, parse_suite, run_suite
from mlpipeline.features import FeatureError, FeatureSpec, build_features
from mlpipeline.io import read_json, read_source
from mlpipeline.names import SPEC_FILE
from mlpipeline.prepare import in_test_part
from mlpipeline.tracking import connect, repo_root

log = logging.getLogger(__name__)

NO_DRIFT, DRIFT, INVALID = 0, 1, 2
DISTRIBUTION_CHECKS = ("kl_divergence", "quantile_values", "_mean_", "_median_", "_stdev_")
SKIPPED_CHECKS = ("expect_table_row_count",)
_EPS = 1e-4


@dataclass(frozen=True)
class Drift:
    """PSI of one column (or of the predictions) against its reference."""

    column: str
    kind: str
    psi: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.psi > self.threshold


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (counts or proportions)."""
    e = np.clip(expected / expected.sum(), _EPS, None)
    a = np.clip(actual / max(actual.sum(), 1), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: np.ndarray, batch: np.ndarray, bins: int) -> float:
    """PSI over the reference's quantile bins (open-ended), of the values that are there:
    missing values are compared as a rate (``MissingRate``), not as a bin."""
    reference, batch = reference[~np.isnan(reference)], batch[~np.isnan(batch)]
    if len(reference) == 0 or len(batch) == 0:
        return 0.0
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    return psi(np.histogram(reference, edges)[0], np.histogram(batch, edges)[0])


def categorical_psi(reference: pd.Series, batch: pd.Series) -> float:
    """PSI over the reference's levels, plus one bin for unseen values (missing values are
    compared as a rate)."""
    reference, batch = pd.Series(reference).dropna(), pd.Series(batch).dropna()
    if reference.empty or batch.empty:
        return 0.0
    levels = list(reference.unique())

    def counts(values: pd.Series) -> np.ndarray:
        known = values.value_counts().reindex(levels, fill_value=0).to_numpy()
        return np.append(known, len(values) - known.sum())

    return psi(counts(reference), counts(batch))


@dataclass(frozen=True)
class MissingRate:
    """The share of missing values of an input column, in the reference and in the batch."""

    column: str
    reference: float
    batch: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return abs(self.batch - self.reference) > self.threshold


def feature_drift(
    reference: pd.DataFrame, batch: pd.DataFrame, spec: FeatureSpec, params: MonitorParams
) -> list[Drift]:
    """PSI of every model feature of the raw ``batch`` against the ``reference`` raw rows:
    numbers over the reference's quantile bins, categories over its levels (an unseen value
    in its own bin)."""
    features = {"reference": build_features(reference, spec), "batch": build_features(batch, spec)}
    drifts = []
    for column in spec.features:
        if column in spec.categories:
            value = categorical_psi(_text(reference[column]), _text(batch[column]))
            kind = "categorical"
        else:
            before, after = (features[k][column].to_numpy(float) for k in ("reference", "batch"))
            value, kind = numeric_psi(before, after, params.bins), "numeric"
        drifts.append(Drift(column, kind, round(value, 6), params.psi_threshold))
    return drifts


def _text(values: pd.Series) -> pd.Series:
    """Values as their text (how category levels are kept), missing ones left missing."""
    return values.astype(object).where(values.notna()).map(str, na_action="ignore")


def missing_rates(
    reference: pd.DataFrame, batch: pd.DataFrame, spec: FeatureSpec, threshold: float
) -> list[MissingRate]:
    """The missing share of every input column, reference against batch."""
    return [
        MissingRate(
            c,
            round(float(reference[c].isna().mean()), 6),
            round(float(batch[c].isna().mean()), 6),
            threshold,
        )
        for c in spec.inputs
    ]


def training_rows(raw: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """The raw rows of the training part, rows without a target included (a batch to score
    has none): the reference a raw batch is compared with."""
    return raw[~in_test_part(raw, test_size, seed)]


def suite_for_batch(spec: dict, leave_out: list[str]) -> dict:
    """The raw suite without row-count checks and without the columns a batch need not carry
    (the target, the dropped columns); the columns in any order."""
    kept = []
    for expectation in spec["expectations"]:
        kwargs = dict(expectation["kwargs"])
        kind = expectation["type"]
        if kind.startswith(SKIPPED_CHECKS) or kwargs.get("column") in leave_out:
            continue
        for key in ("column_list", "column_set"):
            if key in kwargs:
                kwargs[key] = [c for c in kwargs[key] if c not in leave_out]
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


def verdict(validation: dict, drifts: list[Drift | MissingRate]) -> tuple[int, list[str]]:
    """Exit code and what drifted (or what made the batch invalid), as readable phrases."""
    failed = [i for i in validation["results"] if not i["success"] and i["severity"] == "critical"]
    invalid = [i for i in failed if not is_distribution_check(i["expectation"])]
    schema = [i for i in invalid if i["expectation"].startswith("expect_table_columns")]
    if invalid:  # a missing column breaks many checks: name the cause, not every symptom
        return INVALID, sorted({_subject(i) for i in (schema or invalid)})
    drifted = {d.column for d in drifts if d.drifted}
    drifted |= {_subject(i) for i in failed}
    return (DRIFT if drifted else NO_DRIFT), sorted(drifted)


def _subject(item: dict) -> str:
    row = finding(item)
    return row.observed if row.column == "(table)" else row.column


def read_batch(source: str, dataset: DatasetParams) -> pd.DataFrame:
    """Read the batch as ingest reads the source (``dataset.read_options``); an unreadable file
    is invalid data (exit 2)."""
    try:
        return read_source(source, "auto", dataset.read_options)
    except PipelineError as exc:
        raise PipelineError(str(exc), exit_code=INVALID) from exc


def prediction_psi(model_uri: str, batch: pd.DataFrame, predictions: Path, bins: int) -> float:
    """PSI of the model's predictions on the batch against its test-set predictions: binned
    values for regression, class frequencies for classification."""
    import mlflow

    connect(repo_root())  # for a models:/ URI (the run is elsewhere)
    output = mlflow.pyfunc.load_model(model_uri).predict(batch)
    expected = pd.read_csv(predictions)["predicted"]
    if isinstance(output, pd.DataFrame):  # classification: predicted class + probabilities
        return categorical_psi(expected.astype(str), output["prediction"].astype(str))
    return numeric_psi(expected.to_numpy(float), np.asarray(output, dtype=float), bins)


def render_html(report: dict) -> str:
    rows = [
        {
            "status": "fail" if d["drifted"] else "pass",
            "column": d["column"],
            "kind": d["kind"],
            "value": d["psi"],
            "threshold": d["threshold"],
        }
        for d in [*report["features"], report["predictions"]]
        if d
    ] + [
        {
            "status": "fail" if m["drifted"] else "pass",
            "column": m["column"],
            "kind": "missing share",
            "value": f"{m['reference']:.3g} -> {m['batch']:.3g}",
            "threshold": m["threshold"],
        }
        for m in report["missing"]
    ]
    summary = {k: report[k] for k in ("batch", "rows", "verdict", "named")}
    summary["suite failures"] = report["validation"]["statistics"]["critical_failures"]
    return html.render(f"Drift report: {report['batch']}", summary, rows, "status")


VERDICTS = {NO_DRIFT: "no drift", DRIFT: "drift", INVALID: "invalid data"}


def drift_report(batch: pd.DataFrame, name: str, params: Params) -> dict:
    """The batch's suite findings, feature, missing-value and prediction drift, with the
    verdict (``exit_code``: 0 no drift, 1 drift, 2 invalid) and what it names."""
    spec = FeatureSpec.from_json(Path(params.monitor.features_dir) / SPEC_FILE)
    validation = check_batch(batch, params.validate_.suite, optional_columns(params), 5)
    code, named = verdict(validation, [])
    drifts: list[Drift] = []
    missing: list[MissingRate] = []
    if code != INVALID:
        drifts, missing = batch_drift(batch, params, spec)
        code, named = verdict(validation, [*drifts, *missing])
    return {
        "batch": name,
        "rows": len(batch),
        "verdict": VERDICTS[code],
        "exit_code": code,
        "named": named,
        "features": [{**asdict(d), "drifted": d.drifted} for d in drifts[:-1]],
        "predictions": {**asdict(drifts[-1]), "drifted": drifts[-1].drifted} if drifts else None,
        "missing": [{**asdict(m), "drifted": m.drifted} for m in missing],
        "validation": validation,
    }


def batch_drift(
    batch: pd.DataFrame, params: Params, spec: FeatureSpec
) -> tuple[list[Drift], list[MissingRate]]:
    """PSI of every model feature and of the predictions against the training rows, and the
    missing share of every input."""
    monitor = params.monitor
    raw = pd.read_parquet(monitor.raw)
    reference = training_rows(raw, params.featurize.test_size, params.seed)
    try:
        drifts = feature_drift(reference, batch, spec, monitor)
    except FeatureError as exc:
        raise PipelineError(f"monitor: {exc}", exit_code=INVALID) from exc
    missing = missing_rates(reference, batch, spec, monitor.missing_rate_threshold)
    value = prediction_psi(monitor.model, batch, Path(monitor.predictions), monitor.bins)
    drifts.append(
        Drift("(predictions)", "prediction", round(value, 6), monitor.prediction_psi_threshold)
    )
    return drifts, missing
