"""The model card: what the model is (kept in git, the same bytes wherever the same data,
params and code produce it), and the registry's part (version, gate decision, lineage) that
goes into the registered version's description."""

from __future__ import annotations

from mlpipeline.config import Params
from mlpipeline.registry import SPLIT_TAG, Decision


def model_card(
    name: str, summary: dict, metrics: dict, params: Params, tags: dict, sensitivity: str = ""
) -> str:
    """A short Markdown model card of what the model is: the same bytes wherever the same
    data, params and code produce it (no registry version, run id or commit: those are
    machine-local and go to the registry, see ``registry_section``). ``sensitivity``: the
    "Sensitivity and robustness" section, from the search's trials
    (``mlpipeline.analysis.card_section``)."""
    pkg = params.package
    table, best = metrics_table(metrics), best_point(summary)
    limits = "\n".join(f"- {item}" for item in pkg.limitations) or "- (none stated)"
    unseen = "refused" if pkg.unseen_categories == "reject" else "treated as missing"
    raw, features = tags.get("data.raw.md5", "?"), tags.get("data.features.md5", "?")
    model, digest = tags.get("model.lgbm.md5", "?"), tags["params.sha256"][:16]
    return f"""# Model card: {name}

**Task:** {summary.get("task", "regression")} on `{summary["target"]}`
({params.train.objective} objective). **Gate:** {gate_rule(params)}

## Intended use
{pkg.intended_use or "(not stated: set package.intended_use)"}

## Data
- Raw data MD5 `{raw}`, features `{features}`, model `{model}` (dvc.lock);
  params SHA-256 `{digest}`; train/test split SHA-256 `{tags[SPLIT_TAG][:16]}`

## Model
- Feature set `{summary["feature_set"]}`: {", ".join(summary["features"])}
- Best parameters: {best}; {summary["best_trial"]["best_iteration"]} trees
- Requests: unseen category values are {unseen}; at most {pkg.max_batch_rows:,} rows each

## Metrics
| metric | CV (out of fold) | test |
|---|---|---|
{table}

{sensitivity}
## Known limits
{limits}
"""


def metrics_table(metrics: dict) -> str:
    """The test metrics beside the CV (out-of-fold) ones, as Markdown table rows."""
    return "\n".join(
        f"| {metric} | {metrics['cv'].get(metric, float('nan')):.6g} | {value:.6g} |"
        for metric, value in metrics["test"].items()
    )


def best_point(summary: dict) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in summary["best_trial"]["point"].items()
    )


def gate_rule(params: Params) -> str:
    gate = params.package.gate
    bounds = ", ".join(f"{m} {v:g}" for m, v in gate.thresholds.items()) or "none"
    return (
        f"champion if it meets the thresholds ({bounds}) and beats the champion's "
        f"{params.gate_metric} on the same held-out rows by {gate.margin:.2%}; a champion "
        f"from another split is not compared ({gate.on_lineage_change})."
    )


def registry_section(version: str, decision: Decision, tags: dict[str, str]) -> str:
    """The registry's part of the card (the model version's description in MLflow): the
    version, the gate's decision and where the model came from on this machine."""
    verdict = "promoted to champion" if decision.promote else "champion kept"
    return f"""
## Registry: version {version}
- Gate: {verdict} — {decision.reason}
- Git commit `{tags.get("git.commit", "?")}`, DVC experiment `{tags.get("dvc.exp_name") or "-"}`,
  train run `{tags.get("train.run_id") or "?"}`
- Validation report: `{tags.get("validation.report", "?")}`
"""
