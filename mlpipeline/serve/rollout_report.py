"""The rollout report: what the prediction log says about the challenger against the champion.

``python -m mlpipeline rollout-report`` reads the router's log (``mlpipeline.serve.live``),
keeps the latest rollout in it (the last champion/challenger pair), and computes:

- how often the challenger agrees with the champion on the same rows (regression: within
  ``rollout.report.agreement_tolerance`` of the champion's value; classification: the same
  class), and the PSI of the challenger's predictions against the champion's (as ``monitor``
  computes PSI);
- the drift of the live inputs against the training rows (``monitor``'s feature PSI and missing
  shares, its thresholds), naming the drifted columns;
- with a file of outcomes keyed by request id, both models' live metric on the rows that have
  an outcome, with seeded bootstrap confidence intervals, and of their difference (paired: both
  models scored every logged row);

and recommends ``promote``, ``keep watching`` or ``roll back`` by the thresholds of
``rollout.report`` (``recommend``). Markdown, JSON and PNG charts go to ``rollout.report.out_dir``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import MonitorParams, RolloutReportParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_json, write_text, write_with
from mlpipeline.data.names import KEEP_WATCHING, PROMOTE, ROLL_BACK
from mlpipeline.features.transform import FeatureError, FeatureSpec
from mlpipeline.quality.monitoring import (
    categorical_psi,
    drift_rule,
    feature_drift,
    missing_drift,
    numeric_psi,
    unseen_categories,
)
from mlpipeline.serve.live import LogRead, read_log

KEEP = KEEP_WATCHING
VERDICT_CODES = {ROLL_BACK: -1, KEEP: 0, PROMOTE: 1}  # as an MLflow metric
# live metrics: per-row values and how they become the metric; which is decided on
LIVE_METRICS = {"regression": ("rmse", "mae"), "classification": ("log_loss", "accuracy")}
HIGHER_IS_BETTER = frozenset({"accuracy"})
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


# ---- reading the log -----------------------------------------------------------------------


def since_time(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """``--since``: a duration back from now (``90m``, ``24h``, ``7d``) or an ISO 8601 time
    (UTC unless it says otherwise)."""
    if not text:
        return None
    now = now or dt.datetime.now(dt.UTC)
    if match := _DURATION.match(text.strip()):
        return now - dt.timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PipelineError(
            f"rollout-report: --since '{text}' is neither a duration (30m, 24h, 7d) nor an "
            "ISO 8601 time (2026-12-01T09:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def read_rollout_log(folder: Path, since: dt.datetime | None) -> tuple[LogRead, pd.DataFrame]:
    """The log under ``folder`` and its records from ``since`` (refuses an empty log)."""
    found = read_log(folder)
    frame = log_frame(found, since)
    if frame.empty:
        when = f" since {since.isoformat()}" if since else ""
        raise PipelineError(
            f"rollout-report: no predictions logged under {folder}{when} ({found.files} "
            "files): serve the router (`python -m mlpipeline rollout build`, then `mlflow models "
            "serve`) and send it requests, or point --log-dir at the log"
        )
    return found, frame


def log_frame(found: LogRead, since: dt.datetime | None = None) -> pd.DataFrame:
    """The log's records as a frame (one row per answered row), oldest first, from ``since``."""
    frame = pd.DataFrame(found.records)
    if frame.empty:
        return frame
    frame["time"] = pd.to_datetime(frame["time"], format="ISO8601", utc=True)
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(since)]
    for column in ("champion", "challenger", "answered_by"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def latest_rollout(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The records of the last champion/challenger pair in the log, and how many earlier
    records (other pairs) were left out."""
    last = frame.iloc[-1]
    same = (frame["champion"] == last["champion"]) & (
        frame["challenger"].fillna("") == (last["challenger"] or "")
    )
    return frame[same].reset_index(drop=True), int((~same).sum())


def outputs_of(frame: pd.DataFrame, version: str | None) -> pd.Series:
    """Each row's output from ``version`` (missing where it has none)."""
    if version is None:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame["outputs"].map(lambda found: (found or {}).get(version))


def live_inputs(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The logged input rows (None when the log holds only their hashes)."""
    if "inputs" not in frame.columns or frame["inputs"].isna().all():
        return None
    return pd.DataFrame(frame["inputs"].dropna().tolist())


# ---- challenger against champion -----------------------------------------------------------


def predictions(values: pd.Series) -> pd.Series:
    """Outputs as what is compared: the value (regression) or the predicted class."""
    return values.map(lambda v: v.get("prediction") if isinstance(v, dict) else v)


def agreement(champion: pd.Series, challenger: pd.Series, tolerance: float) -> dict[str, Any]:
    """How often the two agree on the rows both scored: the same class, or (regression) the
    challenger within ``tolerance`` × the champion's value."""
    both = champion.notna() & challenger.notna()
    if not both.any():
        return {"rows": 0, "share": None}
    a, b = predictions(champion[both]), predictions(challenger[both])
    if isinstance(champion[both].iloc[0], dict):  # classification
        return {"rows": int(both.sum()), "share": float((a.astype(str) == b.astype(str)).mean())}
    x, y = a.to_numpy(float), b.to_numpy(float)
    return {
        "rows": int(both.sum()),
        "share": float(np.mean(np.abs(y - x) <= tolerance * np.abs(x))),
        "mean_relative_difference": float(np.mean((y - x) / np.where(x == 0, 1, np.abs(x)))),
    }


def prediction_psi(champion: pd.Series, challenger: pd.Series, bins: int) -> float | None:
    both = champion.notna() & challenger.notna()
    if not both.any():
        return None
    a, b = predictions(champion[both]), predictions(challenger[both])
    if isinstance(champion[both].iloc[0], dict):
        return round(categorical_psi(a.astype(str), b.astype(str)), 6)
    return round(numeric_psi(a.to_numpy(float), b.to_numpy(float), bins), 6)


def input_drift(
    live: pd.DataFrame | None,
    reference: pd.DataFrame | None,
    spec: FeatureSpec | None,
    monitor: MonitorParams,
) -> dict[str, Any]:
    """``monitor``'s feature drift and missing shares of the live inputs against the training
    rows, with the drifted columns named (or why it was not computed)."""
    if live is None:
        return {"computed": False, "reason": "the log holds hashes of the inputs (log_inputs)"}
    if reference is None or spec is None:
        return {"computed": False, "reason": "no training rows or feature spec (dvc repro)"}
    try:
        drifts = feature_drift(reference, live, spec, drift_rule(monitor))
        missing = missing_drift(reference, live, spec, drift_rule(monitor))
    except (FeatureError, KeyError) as exc:
        return {"computed": False, "reason": f"the live inputs do not featurize: {exc}"}
    named = sorted(
        {d.column for d in drifts if d.drifted} | {m.column for m in missing if m.drifted}
    )
    return {
        "computed": True,
        "rows": len(live),
        "features": [{**asdict(d), "drifted": d.drifted} for d in drifts],
        "missing": [{**asdict(m), "drifted": m.drifted} for m in missing],
        "unseen": unseen_categories(live, spec),
        "drifted": named,
    }


# ---- live metrics --------------------------------------------------------------------------


def row_losses(output: pd.Series, actual: pd.Series, metric: str) -> np.ndarray:
    """Per-row values whose mean (square root of the mean for rmse) is the metric."""
    if metric in ("rmse", "mae"):
        error = output.to_numpy(float) - actual.to_numpy(float)
        return error**2 if metric == "rmse" else np.abs(error)
    if metric == "accuracy":
        return (predictions(output).astype(str) == actual.astype(str)).to_numpy(float)
    probability = [
        (found or {}).get(f"probability_{label}", 0.0)
        for found, label in zip(output.tolist(), actual.astype(str).tolist(), strict=True)
    ]
    return -np.log(np.clip(np.asarray(probability, dtype=float), 1e-15, 1.0))


def metric_value(losses: np.ndarray, metric: str) -> float:
    mean = float(np.mean(losses))
    return float(np.sqrt(mean)) if metric == "rmse" else mean


def bootstrap(
    losses: dict[str, np.ndarray], metric: str, params: RolloutReportParams
) -> dict[str, Any]:
    """Both models' metric and the improvement (positive: the challenger is better), with
    paired, seeded bootstrap intervals at ``params.confidence``."""
    rng = np.random.default_rng(0)
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
    rows = len(losses["champion"])
    draws = {"champion": [], "challenger": [], "improvement": []}
    for _ in range(params.bootstrap):
        pick = rng.integers(0, rows, rows)
        values = {role: metric_value(found[pick], metric) for role, found in losses.items()}
        draws["champion"].append(values["champion"])
        draws["challenger"].append(values["challenger"])
        draws["improvement"].append(sign * (values["challenger"] - values["champion"]))
    tail = (1 - params.confidence) / 2 * 100
    point = {role: metric_value(found, metric) for role, found in losses.items()}
    point["improvement"] = sign * (point["challenger"] - point["champion"])
    return {
        key: {
            "value": point[key],
            "low": float(np.percentile(values, tail)),
            "high": float(np.percentile(values, 100 - tail)),
        }
        for key, values in draws.items()
    }


def live_metrics(
    frame: pd.DataFrame, outcomes: pd.DataFrame | None, task: str, params: RolloutReportParams
) -> dict[str, Any] | None:
    """Both models' live metrics on the logged rows with an outcome (``request_id`` and
    ``outcome`` columns), with intervals; None without outcomes."""
    if outcomes is None:
        return None
    kind = "regression" if task == "regression" else "classification"
    joined = frame.merge(outcomes, on="request_id", how="inner")
    champion = outputs_of(joined, joined["champion"].iloc[0] if len(joined) else None)
    challenger = outputs_of(joined, joined["challenger"].iloc[0] if len(joined) else None)
    usable = champion.notna() & challenger.notna() & joined["outcome"].notna()
    found: dict[str, Any] = {"rows": int(usable.sum()), "matched": len(joined), "metrics": {}}
    if not usable.any():
        return found
    for metric in LIVE_METRICS[kind]:
        losses = {
            role: row_losses(values[usable], joined.loc[usable, "outcome"], metric)
            for role, values in (("champion", champion), ("challenger", challenger))
        }
        found["metrics"][metric] = bootstrap(losses, metric, params)
    found["decided_on"] = LIVE_METRICS[kind][0]
    return found


# ---- the recommendation --------------------------------------------------------------------


def recommend(summary: dict[str, Any], params: RolloutReportParams) -> tuple[str, list[str]]:
    """``promote``, ``keep watching`` or ``roll back``, and why (pure)."""
    reasons = []
    if summary["drift"].get("drifted"):
        columns = ", ".join(summary["drift"]["drifted"])
        reasons.append(f"live inputs drifted from the training rows: {columns}")
    if summary["challenger"] is None:
        return KEEP, [*reasons, "no challenger in the log (mode off): nothing to decide"]
    if summary["rows"] < params.min_rows:
        return KEEP, [*reasons, f"{summary['rows']} rows logged, fewer than min_rows"]
    if summary["challenger_error_rate"] > params.max_error_rate:
        rate = summary["challenger_error_rate"]
        return ROLL_BACK, [*reasons, f"the challenger failed on {rate:.1%} of rows"]
    live = summary.get("outcomes") or {}
    if live.get("rows", 0) >= params.min_outcomes:
        verdict, why = _on_outcomes(live, params)
        return verdict, [*reasons, why]
    psi_value = summary["agreement"].get("prediction_psi")
    have = f"{live.get('rows', 0)} rows with outcomes, fewer than min_outcomes"
    if psi_value is not None and psi_value > params.max_prediction_psi:
        why = f"its predictions differ from the champion's (PSI {psi_value:.3f}) and {have}"
        return ROLL_BACK, [*reasons, why]
    return KEEP, [*reasons, have]


def _on_outcomes(live: dict[str, Any], params: RolloutReportParams) -> tuple[str, str]:
    metric = live["decided_on"]
    found = live["metrics"][metric]
    gain, champion = found["improvement"], found["champion"]["value"]
    ci = f"[{gain['low']:.4g}, {gain['high']:.4g}]"
    text = (
        f"live {metric}: challenger {found['challenger']['value']:.4g} vs champion "
        f"{champion:.4g} on {live['rows']} rows; improvement {gain['value']:.4g}, "
        f"{params.confidence:.0%} interval {ci}"
    )
    if gain["low"] > 0 and gain["value"] >= params.margin * abs(champion):
        return PROMOTE, f"the challenger is better: {text}"
    if gain["high"] < 0:
        return ROLL_BACK, f"the challenger is worse: {text}"
    return KEEP, f"no clear difference yet: {text}"


def next_steps(verdict: str, report_json: Path) -> list[str]:
    """The commands that act on the recommendation."""
    if verdict == PROMOTE:
        return [
            f"python -m mlpipeline registry promote --from-report {report_json}",
            "python -m mlpipeline rollout build --mode off",
        ]
    if verdict == ROLL_BACK:
        return [
            f"python -m mlpipeline registry rollback --from-report {report_json}",
            "python -m mlpipeline rollout build --mode off",
        ]
    return []


# ---- the report ----------------------------------------------------------------------------


def outcome_frame(table: pd.DataFrame, target: str) -> pd.DataFrame:
    """The outcomes file as ``request_id`` (text) and ``outcome`` (the ``outcome`` column, or
    one named as the target)."""
    column = "outcome" if "outcome" in table.columns else target
    if "request_id" not in table.columns or column not in table.columns:
        raise PipelineError(
            f"rollout-report: the outcomes file needs the columns 'request_id' and 'outcome' "
            f"(or '{target}'); it has {list(table.columns)}"
        )
    found = pd.DataFrame({"request_id": table["request_id"].astype(str), "outcome": table[column]})
    return found.drop_duplicates("request_id", keep="last")


def error_rate(frame: pd.DataFrame, version: str | None) -> float:
    """The share of rows whose record says ``version`` could not score them."""
    if version is None or "errors" not in frame.columns or frame.empty:
        return 0.0
    failed = frame["errors"].map(lambda found: isinstance(found, dict) and version in found)
    return float(failed.mean())


def summarize(
    found: LogRead,
    frame: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    training: tuple[pd.DataFrame | None, FeatureSpec | None],
    params: Any,
) -> dict[str, Any]:
    """Everything the report says about the latest rollout in ``frame`` (the log's records),
    with the recommendation. ``training``: the training rows and the feature spec (for the
    drift of the live inputs); ``params``: the whole ``Params``."""
    settings = params.rollout.report
    rollout, earlier = latest_rollout(frame)
    versions = rollout["champion"].iloc[-1], rollout["challenger"].iloc[-1]
    champion, challenger = (outputs_of(rollout, v) for v in versions)
    summary = {
        "model": params.package.model_name,
        "champion": versions[0],
        "challenger": versions[1],
        "modes": sorted(set(rollout["mode"])),
        "rows": len(rollout),
        "log": {
            "files": found.files,
            "partial_files": found.partial,
            "corrupt_files": found.corrupt,
            "earlier_rollout_rows": earlier,
            "first": rollout["time"].iloc[0].strftime(TIME_FORMAT),
            "last": rollout["time"].iloc[-1].strftime(TIME_FORMAT),
        },
        "answered": {str(k): int(n) for k, n in rollout["answered_by"].value_counts().items()},
        "challenger_error_rate": error_rate(rollout, versions[1]),
        "latency_ms": _latency(rollout),
        "agreement": agreement(champion, challenger, settings.agreement_tolerance)
        | {"prediction_psi": prediction_psi(champion, challenger, settings.bins)},
        "drift": input_drift(live_inputs(rollout), *training, params.monitor),
        "outcomes": live_metrics(rollout, outcomes, params.train.task, settings),
    }
    verdict, reasons = recommend(summary, settings)
    return summary | {"recommendation": verdict, "reasons": reasons}


def _latency(frame: pd.DataFrame) -> dict[str, float] | None:
    if "latency_ms" not in frame.columns:
        return None
    values = frame["latency_ms"].dropna().to_numpy(float)
    if not len(values):
        return None
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def _ci(found: dict[str, float]) -> str:
    return f"{found['value']:.4g} [{found['low']:.4g}, {found['high']:.4g}]"


def render_markdown(summary: dict[str, Any], charts: list[str], steps: list[str]) -> str:
    """The report as Markdown: recommendation, comparison, live metrics, input drift."""
    c, p = summary["challenger"], summary["champion"]
    title = f"v{c} (challenger) vs v{p} (champion)" if c else f"v{p} (champion, no challenger)"
    lines = [f"# Rollout report: {summary['model']} {title}", ""]
    lines += [f"**Recommendation: {summary['recommendation']}**", ""]
    lines += [f"- {reason}" for reason in summary["reasons"]]
    if steps:
        lines += ["", "To act on it:", "", "```bash", *steps, "```"]
    lines += ["", *_overview(summary), *_metrics_section(summary), *_drift_section(summary)]
    lines += [f"![{name}]({name}.png)" for name in charts]
    return "\n".join(lines).rstrip() + "\n"


def _overview(summary: dict[str, Any]) -> list[str]:
    log, share = summary["log"], summary["agreement"]
    psi_value = share.get("prediction_psi")
    answered = ", ".join(f"v{v}: {n:,}" for v, n in sorted(summary["answered"].items()))
    rows = [
        (
            "rows",
            f"{summary['rows']:,} ({', '.join(summary['modes'])}), {log['first']} to {log['last']}",
        ),
        (
            "log files",
            f"{log['files']} (cut-off last lines skipped: {len(log['partial_files'])}; "
            f"earlier rollouts' rows left out: {log['earlier_rollout_rows']:,})",
        ),
        ("answered by", answered),
        ("challenger errors", f"{summary['challenger_error_rate']:.2%}"),
        (
            "agreement",
            "n/a"
            if share["share"] is None
            else f"{share['share']:.1%} of {share['rows']:,} rows scored by both",
        ),
        (
            "prediction PSI (challenger vs champion)",
            "n/a" if psi_value is None else f"{psi_value:.4f}",
        ),
    ]
    if summary["latency_ms"]:
        rows.append(
            (
                "latency p50 / p99 (ms)",
                f"{summary['latency_ms']['p50']:.2f} / {summary['latency_ms']['p99']:.2f}",
            )
        )
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def _metrics_section(summary: dict[str, Any]) -> list[str]:
    live = summary["outcomes"]
    if live is None:
        return ["## Live metrics", "", "No outcomes given (`--outcomes FILE`).", ""]
    lines = [
        "## Live metrics",
        "",
        f"{live['rows']:,} logged rows with an outcome "
        f"({live['matched']:,} matched by request id); values [{'interval'}]:",
        "",
    ]
    lines += ["| metric | champion | challenger | improvement |", "|---|---|---|---|"]
    for metric, found in live["metrics"].items():
        cells = [_ci(found[k]) for k in ("champion", "challenger", "improvement")]
        lines.append(f"| {metric} | {' | '.join(cells)} |")
    return [*lines, ""]


def _drift_section(summary: dict[str, Any]) -> list[str]:
    drift = summary["drift"]
    lines = ["## Live inputs against the training rows", ""]
    if not drift["computed"]:
        return [*lines, f"Not computed: {drift['reason']}.", ""]
    named = ", ".join(drift["drifted"]) or "none"
    lines += [f"Drifted columns: **{named}** ({drift['rows']:,} live rows).", ""]
    lines += [
        "| column | kind | statistic | value | threshold | drifted |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {d['column']} | {d['kind']} | {d['method']} | {d['value']:.4f} | {d['threshold']:g} | "
        f"{'yes' if d['drifted'] else ''} |"
        for d in drift["features"]
    ]
    moved = [m for m in drift["missing"] if m["drifted"]]
    lines += [
        f"- missing share of {m['column']}: {m['method']} {m['value']:.3g} > {m['threshold']:.3g}"
        for m in moved
    ]
    return [*lines, ""]


# ---- charts (Vega-Lite, rendered offline to PNG) -------------------------------------------


def chart_specs(summary: dict[str, Any], frame: pd.DataFrame) -> dict[str, dict]:
    """Vega-Lite specs: both models' predictions, the live metrics, the inputs' PSI."""
    specs = {}
    versions = {"champion": summary["champion"], "challenger": summary["challenger"]}
    values = {role: predictions(outputs_of(frame, v)).dropna() for role, v in versions.items()}
    if any(len(v) for v in values.values()):
        specs["predictions"] = _predictions_chart(values)
    live = summary["outcomes"]
    if live and live["metrics"]:
        specs["metrics"] = _metrics_chart(live)
    if summary["drift"]["computed"]:
        specs["drift"] = _drift_chart(summary["drift"])
    return specs


def _predictions_chart(values: dict[str, pd.Series]) -> dict:
    """Histograms of both models' predictions (regression) or their class counts."""
    numeric = all(pd.api.types.is_numeric_dtype(v) for v in values.values() if len(v))
    chart = _histograms(values) if numeric else _class_counts(values)
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Live predictions, champion and challenger",
        "width": 480,
        "height": 240,
        **chart,
    }


def _histograms(values: dict[str, pd.Series]) -> dict:
    joined = np.concatenate([v.to_numpy(float) for v in values.values()])
    edges = np.histogram_bin_edges(joined, bins=40)
    middles = (edges[:-1] + edges[1:]) / 2
    rows = []
    for role, found in values.items():
        counts, _ = np.histogram(found.to_numpy(float), edges)
        rows += [
            {"model": role, "prediction": float(m), "rows": int(n)}
            for m, n in zip(middles, counts, strict=True)
        ]
    return {
        "data": {"values": rows},
        "mark": {"type": "line", "interpolate": "step", "strokeWidth": 2},
        "encoding": {
            "x": {"field": "prediction", "type": "quantitative"},
            "y": {"field": "rows", "type": "quantitative"},
            "color": {"field": "model", "type": "nominal"},
        },
    }


def _class_counts(values: dict[str, pd.Series]) -> dict:
    rows = [
        {"model": role, "class": str(k), "rows": int(n)}
        for role, found in values.items()
        for k, n in found.astype(str).value_counts().items()
    ]
    return {
        "data": {"values": rows},
        "mark": "bar",
        "encoding": {
            "x": {"field": "class", "type": "nominal"},
            "xOffset": {"field": "model"},
            "y": {"field": "rows", "type": "quantitative"},
            "color": {"field": "model", "type": "nominal"},
        },
    }


def _metrics_chart(live: dict[str, Any]) -> dict:
    metric = live["decided_on"]
    found = live["metrics"][metric]
    rows = [{"model": role, **found[role]} for role in ("champion", "challenger")]
    y = {"field": "model", "type": "nominal", "title": None}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"Live {metric} with its interval ({live['rows']:,} rows with outcomes)",
        "width": 480,
        "height": 120,
        "data": {"values": rows},
        "layer": [
            {
                "mark": "rule",
                "encoding": {
                    "y": y,
                    "x": {
                        "field": "low",
                        "type": "quantitative",
                        "title": metric,
                        "scale": {"zero": False},
                    },
                    "x2": {"field": "high"},
                },
            },
            {
                "mark": {"type": "point", "filled": True, "size": 80},
                "encoding": {
                    "y": y,
                    "x": {"field": "value", "type": "quantitative"},
                    "color": {"field": "model", "type": "nominal"},
                },
            },
        ],
    }


def _drift_chart(drift: dict[str, Any]) -> dict:
    rows = [
        {
            "column": d["column"],
            "ratio": round(d["value"] / d["threshold"], 6) if d["threshold"] else 0.0,
            "drifted": d["drifted"],
        }
        for d in drift["features"]
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Live inputs against the training rows: drift statistic / its threshold",
        "width": 480,
        "height": {"step": 18},
        "data": {"values": rows},
        "layer": [
            {
                "mark": "bar",
                "encoding": {
                    "y": {"field": "column", "type": "nominal", "sort": "-x"},
                    "x": {
                        "field": "ratio",
                        "type": "quantitative",
                        "title": "statistic / threshold",
                    },
                    "color": {"field": "drifted", "type": "nominal"},
                },
            },
            {
                "mark": {"type": "rule", "strokeDash": [4, 4]},
                "encoding": {"x": {"datum": 1}},
            },
        ],
    }


def render_png(spec: dict) -> bytes:
    """A Vega-Lite chart as PNG, offline (vl-convert)."""
    import vl_convert

    return vl_convert.vegalite_to_png(vl_spec=spec, scale=1.5)


def write_report(summary: dict[str, Any], frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``rollout.json``, ``rollout.md`` and the charts' PNGs in ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    specs = chart_specs(summary, latest_rollout(frame)[0])
    written = []
    for name, spec in specs.items():
        png = render_png(spec)
        write_with(lambda path, data=png: path.write_bytes(data), out_dir / f"{name}.png")
        written.append(out_dir / f"{name}.png")
    steps = next_steps(summary["recommendation"], out_dir / "rollout.json")
    write_json(summary | {"next": steps}, out_dir / "rollout.json")
    write_text(render_markdown(summary, list(specs), steps), out_dir / "rollout.md")
    return [out_dir / "rollout.json", out_dir / "rollout.md", *written]


def report_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """What the MLflow run records of the report, as numbers."""
    found = {
        "rows": summary["rows"],
        "recommendation": VERDICT_CODES[summary["recommendation"]],
        "challenger_error_rate": summary["challenger_error_rate"],
        "agreement": summary["agreement"]["share"],
        "psi.predictions": summary["agreement"]["prediction_psi"],
        "drifted_columns": len(summary["drift"].get("drifted", [])),
    }
    found |= {f"drift.{d['column']}": d["value"] for d in summary["drift"].get("features", [])}
    for metric, values in ((summary["outcomes"] or {}).get("metrics") or {}).items():
        found |= {f"live.{metric}.{role}": values[role]["value"] for role in values}
    return {k: float(v) for k, v in found.items() if v is not None}
