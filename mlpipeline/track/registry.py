"""The MLflow model registry: the champion gate, lineage, rollback.

The package stage registers each packaged model as a new version, with the alias
``challenger``, and moves the alias ``champion`` to it only when ``gate_decision`` says so:
the new version meets the absolute thresholds of ``package.gate`` and, when there is a
champion trained on the same split, beats it on the same held-out rows by the relative
margin (``lineage_decision`` when the split differs). Every version carries its lineage as
tags. People act on it with ``python -m mlpipeline registry``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from mlpipeline.core.config import (
    QUALITY_HIGHER_IS_BETTER,
    FeaturizeParams,
    GateParams,
    SliceGate,
)
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.names import CHALLENGER, CHAMPION, LOCKED_OUTPUTS, PROMOTE, ROLL_BACK

log = logging.getLogger(__name__)

PREVIOUS_TAG = "champion.previous"  # the version that was champion before this one


SPLIT_TAG = "split.sha256"  # which train/test split a version was trained and tested on
SPLIT_DEFINITION_TAG = "split.definition"  # ...and what defines it, as JSON


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on a challenger. ``comparable``: whether the champion was scored on
    the challenger's held-out rows (False when its split differs: ``lineage`` says how)."""

    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None = None
    champion_version: str | None = None
    comparable: bool = True
    lineage: str = ""


def split_definition(
    seed: int, featurize: FeaturizeParams, raw_schema: list[str], raw_md5: str
) -> dict[str, Any]:
    """What decides which rows are held out. A row's part follows a seeded hash of its values
    (``mlpipeline.features.prepare.in_test_part``), so the seed, the test share and the raw
    columns decide it, whatever rows are added or filtered; a stratified draw depends on
    the whole cleaned table too."""
    definition: dict[str, Any] = {
        "seed": seed,
        "test_size": featurize.test_size,
        "stratify": featurize.stratify,
        "target": featurize.target,
        "raw_schema": raw_schema,
    }
    if featurize.stratify:
        definition |= {
            "raw_md5": raw_md5,
            "drop_duplicates": featurize.drop_duplicates,
            "row_filters": featurize.row_filters,
        }
    return definition


def split_digest(definition: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def split_change(champion_tags: Mapping[str, str], definition: Mapping[str, Any]) -> str:
    """How the champion's split differs from ``definition`` ("" if it is the same)."""
    if champion_tags.get(SPLIT_TAG) == split_digest(definition):
        return ""
    try:
        before = json.loads(champion_tags[SPLIT_DEFINITION_TAG])
    except (KeyError, ValueError):
        return "its split is not recorded (registered before split lineage was tagged)"
    changed = [
        f"{key} {before.get(key)!r} -> {definition.get(key)!r}"
        for key in sorted(set(before) | set(definition))
        if before.get(key) != definition.get(key)
    ]
    return "its split differs: " + "; ".join(changed)


def better(metric: str, value: float, than: float, margin: float) -> bool:
    """``value`` beats ``than`` by at least ``margin`` × |than|, in the metric's direction."""
    need = margin * abs(than)
    if metric in QUALITY_HIGHER_IS_BETTER:
        return value >= than + need and value > than
    return value <= than - need and value < than


def threshold_failures(metrics: Mapping[str, float], thresholds: Mapping[str, float]) -> list[str]:
    """The thresholds ``metrics`` miss, as readable text."""
    failures = []
    for metric, bound in thresholds.items():
        value = metrics[metric]
        if metric in QUALITY_HIGHER_IS_BETTER and not value >= bound:
            failures.append(f"{metric} {value:.6g} < minimum {bound:g}")
        elif metric not in QUALITY_HIGHER_IS_BETTER and not value <= bound:
            failures.append(f"{metric} {value:.6g} > maximum {bound:g}")
    return failures


def slice_failures(slices: Mapping[str, Any] | None, rule: SliceGate | None) -> list[str]:
    """The segments of ``reports/slices.json`` that break ``package.gate.slices``."""
    if not slices or rule is None:
        return []
    metric, failures = slices["metric"], []
    for feature, entries in slices["segments"].items():
        for key, entry in entries.items():
            if entry["rows"] >= rule.min_rows and entry["ratio"] > rule.max_ratio:
                failures.append(
                    f"segment {feature} {key} ({entry['rows']:,} rows): {metric} "
                    f"{entry['ratio']:.2f}x the whole test part > {rule.max_ratio:g}x"
                )
    return failures


def blocked_by_slices(decision: Decision, failures: list[str]) -> Decision:
    """A promotion the slice gate stops, named in the decision (others pass unchanged)."""
    if not decision.promote or not failures:
        return decision
    shown = "; ".join(failures[:3]) + (
        f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    )
    return replace(decision, promote=False, reason=f"package.gate.slices: {shown}")


def gate_decision(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate: GateParams,
    metric: str,
    champion_version: str | None = None,
) -> Decision:
    """Promote the challenger or keep the champion, with the reason (pure)."""
    failures = threshold_failures(challenger, gate.thresholds)
    base = {"metric": metric, "challenger": challenger[metric]}
    if champion is not None:
        base |= {"champion": champion[metric], "champion_version": champion_version}
    if failures:
        return Decision(False, "thresholds not met: " + "; ".join(failures), **base)
    if champion is None:
        return Decision(True, "first model to meet the thresholds", **base)
    versus = (
        f"{metric} {challenger[metric]:.6g} vs champion v{champion_version} {champion[metric]:.6g}"
    )
    if better(metric, challenger[metric], champion[metric], gate.margin):
        return Decision(True, f"beats the champion: {versus}", **base)
    return Decision(False, f"not better by the {gate.margin:.2%} margin: {versus}", **base)


def lineage_decision(
    challenger: Mapping[str, float],
    gate: GateParams,
    metric: str,
    champion_version: str,
    change: str,
    version: str,
) -> Decision:
    """The gate's verdict when the champion was trained on another split (``change``): its
    score on the challenger's held-out rows would not be comparable (it may have trained on
    some of them), so the thresholds and ``package.gate.on_lineage_change`` decide (pure)."""
    base = {
        "metric": metric,
        "challenger": challenger[metric],
        "champion_version": champion_version,
        "comparable": False,
        "lineage": f"champion v{champion_version}: {change}",
    }
    failures = threshold_failures(challenger, gate.thresholds)
    if failures:
        return Decision(False, "thresholds not met: " + "; ".join(failures), **base)
    why = f"champion v{champion_version} not compared: {change}"
    if gate.on_lineage_change == "promote":
        return Decision(True, f"{why}; promoted by package.gate.on_lineage_change", **base)
    return Decision(
        False,
        f"{why}; kept by package.gate.on_lineage_change (promote by hand: "
        f"`python -m mlpipeline registry promote --version {version}`)",
        **base,
    )


# ---- lineage -------------------------------------------------------------------------------


def locked_hashes(lock_file: Path) -> dict[str, str]:
    """The MD5s ``dvc.lock`` records for the raw data, the features and the trained model."""
    try:
        stages = yaml.safe_load(lock_file.read_text()).get("stages", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return {}
    hashes = {}
    for tag, (stage, path) in LOCKED_OUTPUTS.items():
        for out in stages.get(stage, {}).get("outs", []):
            if out.get("path") == path:
                hashes[tag] = out.get("md5", "")
    return hashes


# ---- MLflow --------------------------------------------------------------------------------


def version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_champion(client: Any, name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``; remember the one it replaces. Returns that one."""
    current = version_by_alias(client, name, CHAMPION)
    previous = current.version if current is not None else None
    if previous is not None and previous != str(version):
        client.set_model_version_tag(name, str(version), PREVIOUS_TAG, previous)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return previous


JUDGE_ATTEMPTS = 3


def settled_promotion(
    client: Any, name: str, version: str, decide: Callable[[], Decision]
) -> Decision:
    """The gate's decision (``decide``) on ``version``, and the champion moved to it if it
    wins. Clones sharing a tracking server package at the same time, and the registry has no
    compare-and-set: if another version became champion while this one was judged, it is
    judged again against that one, so a slower, worse challenger never replaces a better
    champion it was not compared with (left: the moment between reading the alias and
    setting it)."""
    for _ in range(JUDGE_ATTEMPTS):
        decision = decide()
        if not decision.promote:
            return decision
        current = version_by_alias(client, name, CHAMPION)
        now = None if current is None else str(current.version)
        judged = decision.champion_version
        if now == (None if judged is None else str(judged)):
            set_champion(client, name, version)
            return decision
        log.info("champion moved to v%s while v%s was judged: judging again", now, version)
    reason = f"the champion moved {JUDGE_ATTEMPTS} times while v{version} was judged; it stays"
    return replace(decision, promote=False, reason=f"{reason} (rerun the package stage)")


def rollback(client: Any, name: str, to: str | None = None) -> tuple[str, str]:
    """Champion back to ``to``, or to the version it replaced. Returns (from, to)."""
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise PipelineError(f"registry: model '{name}' has no champion to roll back")
    target = to or current.tags.get(PREVIOUS_TAG)
    if not target:
        raise PipelineError(
            f"registry: champion v{current.version} of '{name}' replaced no earlier version; "
            "name one with --to"
        )
    client.get_model_version(name, str(target))  # raises if it does not exist
    client.set_registered_model_alias(name, CHAMPION, str(target))
    client.set_model_version_tag(name, current.version, "champion.rolled_back_from", "true")
    return current.version, str(target)


def _report_for(report: Mapping[str, Any], name: str, wanted: str, path: str) -> None:
    """A rollout report (``python -m mlpipeline rollout-report``) of ``name`` that recommends
    ``wanted``, or an error saying what it recommends."""
    if report.get("model") != name:
        raise PipelineError(
            f"registry: {path} is a report on '{report.get('model')}', not '{name}'"
        )
    if report.get("recommendation") != wanted:
        reasons = "; ".join(report.get("reasons", []))
        raise PipelineError(
            f"registry: {path} recommends '{report.get('recommendation')}', not '{wanted}' "
            f"({reasons}); act by hand with --version / --to"
        )


def promote_from_report(
    client: Any, name: str, report: Mapping[str, Any], path: str
) -> tuple[str | None, str]:
    """Make the report's challenger the champion, if it recommends promoting it and the
    champion is still the one it was compared with. Returns (previous, new)."""
    _report_for(report, name, PROMOTE, path)
    current = version_by_alias(client, name, CHAMPION)
    if current is None or str(current.version) != str(report["champion"]):
        now = f"v{current.version}" if current is not None else "none"
        raise PipelineError(
            f"registry: the champion changed since {path} was written (now {now}, then "
            f"v{report['champion']}): run `python -m mlpipeline rollout-report` again"
        )
    return set_champion(client, name, str(report["challenger"])), str(report["challenger"])


def rollback_from_report(client: Any, name: str, report: Mapping[str, Any], path: str) -> str:
    """Take the report's challenger out of the rollout: if it has become the champion,
    champion goes back to the version the report compared it with; else it loses the
    ``challenger`` alias. Either way it is tagged ``rollout.rolled_back``. What was done."""
    _report_for(report, name, ROLL_BACK, path)
    challenger, champion = str(report["challenger"]), str(report["champion"])
    current = version_by_alias(client, name, CHAMPION)
    client.set_model_version_tag(name, challenger, "rollout.rolled_back", "true")
    if current is not None and str(current.version) == challenger:
        old, new = rollback(client, name, champion)
        return f"champion v{old} -> v{new}"
    held = version_by_alias(client, name, CHALLENGER)
    if held is not None and str(held.version) == challenger:
        client.delete_registered_model_alias(name, CHALLENGER)
    return f"v{challenger} is no longer the challenger; champion stays v{champion}"


def lineage(client: Any, name: str, version: Any) -> dict[str, Any]:
    """What produced a version: its tags, its runs and their datasets, its LoggedModel
    (model id, metrics), and the commands that restore the inputs."""
    tags = dict(version.tags)
    commit = tags.get("git.commit", "")
    model_id = model_id_of(version)
    return {
        "model": name,
        "version": version.version,
        "aliases": list(getattr(version, "aliases", []) or []),
        "model_id": model_id,
        "model_metrics": model_metrics(client, model_id),
        "package_run_id": version.run_id,
        "train_run_id": tags.get("train.run_id", ""),
        "datasets": run_datasets(client, version.run_id),
        "git_commit": commit,
        "dvc_exp_name": tags.get("dvc.exp_name", ""),
        "data": {k: v for k, v in tags.items() if k.startswith(("data.", "model.", "params."))},
        "validation_report": tags.get("validation.report", ""),
        "restore": [f"git checkout {commit}", "dvc checkout"] if commit else [],
        "tags": tags,
    }


def model_id_of(version: Any) -> str:
    """The MLflow LoggedModel a registered version resolves to: its ``model_id``, or, where the
    registry does not store one (MLflow's SQL registry), the id its source names
    (``models:/<model_id>``, which is how MLflow loads the version)."""
    if model_id := getattr(version, "model_id", None):
        return model_id
    source = str(getattr(version, "source", "") or "")
    return source.removeprefix("models:/").split("/")[0] if source.startswith("models:/m-") else ""


def run_datasets(client: Any, run_id: str | None) -> list[dict[str, Any]]:
    """The datasets a run lists (MLflow's Datasets panel): name, context, digest (the MD5
    dvc.lock records), source, rows and target."""
    if not run_id:
        return []
    found = []
    for item in client.get_run(run_id).inputs.dataset_inputs or []:
        dataset, tags = item.dataset, {t.key: t.value for t in item.tags}
        profile, source = _json(dataset.profile), _json(dataset.source)
        found.append(
            {
                "name": dataset.name,
                "context": tags.get("mlflow.data.context", ""),
                "digest": dataset.digest,
                "source": source.get("uri", dataset.source),
                "rows": profile.get("num_rows"),
                "target": profile.get("targets"),
            }
        )
    return found


def model_metrics(client: Any, model_id: str) -> dict[str, float]:
    """The LoggedModel's metrics (the package stage links the test metrics), as key: value."""
    if not model_id:
        return {}
    return {metric.key: metric.value for metric in client.get_logged_model(model_id).metrics or []}


def _json(text: str | None) -> dict[str, Any]:
    try:
        loaded = json.loads(text or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def decision_record(decision: Decision, version: str) -> dict[str, Any]:
    """The gate's verdict as DVC metrics (reports/package.json)."""
    return {"version": int(version), **asdict(decision)}
