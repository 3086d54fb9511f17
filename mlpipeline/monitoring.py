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

from mlpipeline.config import MonitorParams
from mlpipeline.errors import PipelineError
from mlpipeline.expectations import html
from mlpipeline.expectations.validation import build_report, finding, parse_suite, run_suite
from mlpipeline.features import FeatureError, FeatureSpec, build_features
from mlpipeline.io import read_json, read_source
from mlpipeline.names import SPEC_FILE, TRAIN_FILE
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
    """PSI over the reference's quantile bins (open-ended), with missing values as a bin."""
    finite = reference[~np.isnan(reference)]
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])

    def histogram(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        return np.append(np.histogram(values[~missing], edges)[0], missing.sum())

    return psi(histogram(reference), histogram(batch))


def categorical_psi(reference: pd.Series, batch: pd.Series) -> float:
    """PSI over the reference's levels, plus one bin for missing or unseen values."""
    levels = list(pd.Series(reference).dropna().unique())

    def counts(values: pd.Series) -> np.ndarray:
        known = pd.Series(values).value_counts().reindex(levels, fill_value=0).to_numpy()
        return np.append(known, len(values) - known.sum())

    return psi(counts(reference), counts(batch))


def feature_drift(
    reference: pd.DataFrame, batch: pd.DataFrame, spec: FeatureSpec, params: MonitorParams
) -> list[Drift]:
    """PSI of every model feature of ``batch`` against the training split."""
    drifts = []
    for column in spec.features:
        if column in spec.categories:
            value = categorical_psi(reference[column].astype(str), batch[column].astype(str))
            kind = "categorical"
        else:
            value = numeric_psi(
                reference[column].to_numpy(float), batch[column].to_numpy(float), params.bins
            )
            kind = "numeric"
        drifts.append(Drift(column, kind, round(value, 6), params.psi_threshold))
    return drifts


def suite_for_batch(spec: dict, target: str) -> dict:
    """The raw suite without row-count checks and without the target (a batch has no labels)."""
    kept = []
    for expectation in spec["expectations"]:
        kwargs = dict(expectation["kwargs"])
        if expectation["type"].startswith(SKIPPED_CHECKS) or kwargs.get("column") == target:
            continue
        for key in ("column_list", "column_set"):
            if key in kwargs:
                kwargs[key] = [c for c in kwargs[key] if c != target]
        kept.append({**expectation, "kwargs": kwargs})
    return {**spec, "expectations": kept}


def check_batch(batch: pd.DataFrame, suite_path: str, target: str, examples: int) -> dict:
    """The raw suite's report on a batch of rows without labels (see ``suite_for_batch``)."""
    suite = parse_suite(suite_for_batch(read_json(Path(suite_path)), target), suite_path)
    return build_report(run_suite(batch, suite, examples), suite_path)


def is_distribution_check(expectation: str) -> bool:
    return any(part in expectation for part in DISTRIBUTION_CHECKS)


def verdict(validation: dict, drifts: list[Drift]) -> tuple[int, list[str]]:
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


def read_batch(source: str) -> pd.DataFrame:
    """Read the batch; an unreadable file is invalid data (exit 2)."""
    try:
        return read_source(source)
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
            "psi": d["psi"],
            "threshold": d["threshold"],
        }
        for d in [*report["features"], report["predictions"]]
        if d
    ]
    summary = {k: report[k] for k in ("batch", "rows", "verdict", "named")}
    summary["suite failures"] = report["validation"]["statistics"]["critical_failures"]
    return html.render(f"Drift report: {report['batch']}", summary, rows, "status")


VERDICTS = {NO_DRIFT: "no drift", DRIFT: "drift", INVALID: "invalid data"}


def drift_report(batch: pd.DataFrame, name: str, params: MonitorParams, target: str) -> dict:
    """The batch's suite findings, feature drift and prediction drift, with the verdict
    (``exit_code``: 0 no drift, 1 drift, 2 invalid) and what it names."""
    validation = check_batch(batch, params.suite, target, 5)
    code, named = verdict(validation, [])
    drifts: list[Drift] = []
    if code != INVALID:
        drifts = batch_drift(batch, params)
        code, named = verdict(validation, drifts)
    return {
        "batch": name,
        "rows": len(batch),
        "verdict": VERDICTS[code],
        "exit_code": code,
        "named": named,
        "features": [{**asdict(d), "drifted": d.drifted} for d in drifts[:-1]],
        "predictions": {**asdict(drifts[-1]), "drifted": drifts[-1].drifted} if drifts else None,
        "validation": validation,
    }


def batch_drift(batch: pd.DataFrame, params: MonitorParams) -> list[Drift]:
    """PSI of every model feature against the training split, then of the predictions."""
    features_dir = Path(params.features_dir)
    spec = FeatureSpec.from_json(features_dir / SPEC_FILE)
    reference = pd.read_parquet(features_dir / TRAIN_FILE, columns=spec.features)
    try:
        drifts = feature_drift(reference, build_features(batch, spec), spec, params)
    except FeatureError as exc:
        raise PipelineError(f"monitor: {exc}", exit_code=INVALID) from exc
    value = prediction_psi(params.model, batch, Path(params.predictions), params.bins)
    threshold = params.prediction_psi_threshold
    return [*drifts, Drift("(predictions)", "prediction", round(value, 6), threshold)]
