"""The model card: what the model is (kept in git, the same bytes wherever the same data,
params and code produce it), and the registry's part (version, gate decision, lineage) that
goes into the registered version's description."""

from __future__ import annotations

from collections.abc import Sequence

from mlpipeline.core.config import Params
from mlpipeline.track.registry import SPLIT_TAG, Decision


def model_card(
    name: str,
    summary: dict,
    metrics: dict,
    params: Params,
    tags: dict,
    sensitivity: str = "",
    plots: Sequence[str] = (),
    slices: dict | None = None,
    worst: Sequence[dict] = (),
) -> str:
    """A short Markdown model card of what the model is: the same bytes wherever the same
    data, params and code produce it (no registry version, run id or commit: those are
    machine-local and go to the registry, see ``registry_section``). ``sensitivity``: the
    "Sensitivity and robustness" section, from the search's trials
    (``mlpipeline.model.analysis.card_section``). ``plots``: the names of the DVC plots it links, as
    ``plots/<name>.png`` beside the card (in the package run's artifacts, and in ``python -m
    mlpipeline plots``'s folder). ``slices``: the test metric by segment
    (``reports/slices.json``); ``worst``: the worst test predictions with their contributions."""
    pkg = params.package
    limits = "\n".join(f"- {item}" for item in pkg.limitations) or "- (none stated)"
    return f"""# Model card: {name}

**Task:** {summary.get("task", "regression")} on `{summary["target"]}`
({params.train.objective} objective). **Gate:** {gate_rule(params)}

## Intended use
{pkg.intended_use or "(not stated: set package.intended_use)"}

{data_and_model(summary, params, tags)}
## Metrics
| metric | CV (out of fold) | test |
|---|---|---|
{metrics_table(metrics)}
{segments_section(slices)}{worst_section(worst, summary)}
{sensitivity}
## Known limits
{limits}
{plots_section(plots)}"""


def data_and_model(summary: dict, params: Params, tags: dict) -> str:
    """The card's Data (digests from dvc.lock and the params) and Model sections."""
    pkg = params.package
    unseen = unseen_words(pkg.unseen_categories)
    raw, features = tags.get("data.raw.md5", "?"), tags.get("data.features.md5", "?")
    model, digest = tags.get("model.lgbm.md5", "?"), tags["params.sha256"][:16]
    return f"""## Data
{source_line(tags)}- Raw data MD5 `{raw}`, features `{features}`, model `{model}` (dvc.lock);
  params SHA-256 `{digest}`; train/test split SHA-256 `{tags[SPLIT_TAG][:16]}`

## Model
- Feature set `{summary["feature_set"]}`: {", ".join(summary["features"])}
- Best parameters: {best_point(summary)}; {summary["best_trial"]["best_iteration"]} trees
- Requests: unseen category values are {unseen}; at most {pkg.max_batch_rows:,} rows each
"""


def source_line(tags: dict) -> str:
    """The source table's version (a DVC-tracked source; none for a package table)."""
    origin = tags.get("data.source.origin", "")
    version = tags.get("data.source.origin_version", "")
    if not tags.get("data.source.md5"):
        return f"- Source `{origin}` ({version}), read in place\n" if origin else ""
    imported = f", imported from `{origin}` ({version})" if origin else ""
    return f"- Source `{tags['data.source']}`, MD5 `{tags['data.source.md5']}`{imported}\n"


def unseen_words(unseen: str | dict[str, str]) -> str:
    """How the card says what happens to a category value the model was not trained on."""
    if isinstance(unseen, str):
        return "refused" if unseen == "reject" else "scored as missing"
    scored = sorted(c for c, how in unseen.items() if how == "missing")
    return f"scored as missing in {', '.join(scored)}; refused elsewhere" if scored else "refused"


def plots_section(plots: Sequence[str]) -> str:
    """The card's plots, linked as images beside it (nothing when there are none)."""
    if not plots:
        return ""
    images = "\n".join(f"![{name}](plots/{name}.png)" for name in plots)
    return f"""
## Plots
The DVC plots of this model's test set and search (`dvc plots show`), as PNG beside this card:

{images}
"""


def segments_section(slices: dict | None) -> str:
    """ "Performance by segment": every segment of ``reports/slices.json``, small ones marked."""
    if not slices:
        return ""
    metric, overall = slices["metric"], slices["overall"]
    rows = []
    for feature, entries in slices["segments"].items():
        for key, entry in entries.items():
            name = f"`{feature}` {key}" + (
                f" ({entry['low']:.4g} to {entry['high']:.4g})" if "low" in entry else ""
            )
            small = " (small)" if entry["small"] else ""
            change = entry[metric] - overall[metric]
            rows.append(
                f"| {name} | {entry['rows']:,}{small} | {entry[metric]:.4g} | {change:+.4g} "
                f"| {entry['ratio']:.2f} |"
            )
    worst = slices.get("worst")
    worst_line = (
        f"Worst segment of at least {slices['min_rows']} rows: {worst['segment']} "
        f"({worst['ratio']:.2f}× the whole test part)."
        if worst
        else f"No segment has {slices['min_rows']} rows or more."
    )
    return f"""
## Performance by segment
Test {metric} of each value of every categorical feature and of quantile ranges of the most
important numeric features; whole test part: {overall[metric]:.4g} on {overall["rows"]:,} rows.
Segments of fewer than {slices["min_rows"]} rows are marked small: their metric is noise.
{worst_line}

| segment | rows | {metric} | difference | × whole |
|---|---|---|---|---|
{chr(10).join(rows)}
"""


def worst_section(worst: Sequence[dict], summary: dict) -> str:
    """ "Worst predictions": the test rows with the largest errors (or the least probability
    of their true class), their values and the features that pushed them most."""
    if not worst:
        return ""
    classification = summary.get("task", "regression") != "regression"
    how = "probability of the actual class" if classification else "error"
    scale = "" if classification else _scale_note(summary)
    rows = []
    for record in worst:
        miss = (
            f"{record['probability_of_actual']:.3g}"
            if classification
            else f"{record['error']:+.4g}"
        )
        values = ", ".join(f"{k}={_short(v)}" for k, v in record["features"].items())
        pushes = ", ".join(
            f"{c['feature']} {c['contribution']:+.3g}" for c in record["top_contributions"]
        )
        rows.append(
            f"| {record['row']} | {_short(record['actual'])} | {_short(record['predicted'])} "
            f"| {miss} | {values} | {pushes} |"
        )
    return f"""
## Worst predictions
The test rows the model got most wrong, with the features that moved each prediction most
(LightGBM's exact contributions to the raw score{scale}).

| test row | actual | predicted | {how} | features | top contributions |
|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def _scale_note(summary: dict) -> str:
    how = summary.get("target_transform", "none")
    return "" if how == "none" else f", on the {how}-transformed target's scale"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "missing" if value is None else str(value).replace("|", "\\|")


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


def linked_to_run(card: str, run_id: str) -> str:
    """The card with its plots served from run ``run_id``'s artifacts by the MLflow UI (the
    registered version's description: the card's relative image paths would not resolve)."""
    return card.replace("](plots/", f"](get-artifact?run_uuid={run_id}&path=plots/")


# MLflow keeps a model version's description in a VARCHAR(5000) column: SQLite ignores the
# length, PostgreSQL and MySQL refuse a longer value (the whole registration fails).
DESCRIPTION_LIMIT = 5000


def registry_description(
    card: str, run_id: str, version: str, decision: Decision, tags: dict[str, str]
) -> str:
    """The version's description: the card (plots served from run ``run_id``) and the
    registry's section. A card too long for the registry loses the bodies of its longest
    sections first (each replaced by a pointer to the whole card among the run's artifacts;
    the plots stay), and is cut at a line only if that is not enough."""
    registry = registry_section(version, decision, tags)
    room = DESCRIPTION_LIMIT - len(registry)
    note = f"*Shortened to fit the registry: the whole card is in run {run_id}'s artifacts.*\n"
    head, *sections = linked_to_run(card, run_id).split("\n## ")
    parts = [head, *(f"## {part}" for part in sections)]
    longest_first = sorted(range(1, len(parts)), key=lambda i: -len(parts[i]))
    for i in [i for i in longest_first if not parts[i].startswith("## Plots")]:
        if len("\n".join(parts)) <= room:
            break
        parts[i] = f"{parts[i].splitlines()[0]}\n\n{note}"
    text = "\n".join(parts)
    if len(text) > room:
        text = text[: room - len(note) - 1]
        text = text[: text.rfind("\n") + 1] + "\n" + note
    return text + registry


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


CARD_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;line-height:1.45}
table{border-collapse:collapse} th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4} code{font-size:.9em} img{max-width:100%;margin:.5rem 1rem .5rem 0}
"""


def card_html(markdown: str) -> str:
    """The card (Markdown) as a self-contained HTML page: no scripts, no external assets
    (its images are the relative paths it links); titled by its first heading."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    title = next((line.lstrip("# ") for line in markdown.splitlines() if line.strip()), "")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CARD_STYLE}</style></head><body>\n{body}</body></html>\n"
    )
