"""Stage ``package``: wrap the trained booster as an MLflow pyfunc model that takes raw rows.

The model is saved with models-from-code (``stages/serving.py``): LightGBM's text booster and
a JSON feature spec as artifacts, ``stages/features.py`` as code, no pickle. It is written to
the output folder (a DVC output, servable with ``mlflow models serve``) and logged to MLflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stages import cli
from stages.errors import StageError
from stages.features import FeatureSpec
from stages.files import atomic_dir, file_md5, path_md5, read_json, write_json, write_text
from stages.metrics import classification_metrics, regression_metrics
from stages.params import Params, load_params
from stages.registry import (
    CHALLENGER,
    CHAMPION,
    SPLIT_DEFINITION_TAG,
    SPLIT_TAG,
    Decision,
    decision_record,
    gate_decision,
    lineage_decision,
    locked_hashes,
    set_champion,
    split_change,
    split_definition,
    split_digest,
    version_by_alias,
)
from stages.tracking import (
    BOOSTER_TAG,
    TRACKING_SWITCH,
    StageRun,
    git_state,
    repo_root,
    stage_run,
    tracking_enabled,
)

log = logging.getLogger(__name__)

SERVING_CODE = Path(__file__).with_name("serving.py")
FEATURES_CODE = Path(__file__).with_name("features.py")
RUNTIME_PACKAGES = ("lightgbm", "numpy", "pandas", "numexpr")
SHIPPED_FEATURES = "pipeline_features"  # the module name serving.py imports
# What the served model needs from train's summary (see serving.py).
SERVED_SUMMARY = (
    "task",
    "spec",
    "target",
    "target_transform",
    "classes",
    "features",
    "num_threads",
)


def input_example(raw: pd.DataFrame, spec: FeatureSpec, rows: int) -> pd.DataFrame:
    """The first raw rows, inputs only, with text columns as plain strings for MLflow."""
    example = raw.loc[: rows - 1, spec.inputs].copy()
    for column in example.columns:
        if not pd.api.types.is_numeric_dtype(example[column]):
            example[column] = example[column].astype(object)
    return example


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the served model, from the installed versions."""
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def code_package(folder: Path) -> Path:
    """The featurization as a top-level module, to ship inside the model.

    A module of its own name, not ``stages``: MLflow puts the model's code folder first on
    ``sys.path`` when it loads a model, and a second, partial ``stages`` package there would
    shadow this repository's for anything imported afterwards (worker processes included).
    """
    module = folder / f"{SHIPPED_FEATURES}.py"
    shutil.copy2(FEATURES_CODE, module)
    return module


# ---- the gate's evaluation -----------------------------------------------------------------


def held_out_rows(features_dir: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """The test part as raw input rows (every input column featurize kept) and the target."""
    inputs = FeatureSpec.from_json(features_dir / "spec.json").inputs
    test = pd.read_parquet(features_dir / "test.parquet", columns=[*inputs, target])
    return test[inputs], test[target]


def held_out_quality(output: Any, actual: pd.Series, task: str) -> dict[str, float]:
    """A packaged model's test metrics from its output on the held-out rows."""
    if task == "regression":
        return regression_metrics(actual.to_numpy(float), np.asarray(output, dtype=float))
    columns = [c for c in output.columns if c.startswith("probability_")]
    classes = [c.removeprefix("probability_") for c in columns]
    labels = actual.astype(str).map({c: i for i, c in enumerate(classes)})
    if labels.isna().any():
        unknown = sorted(set(actual.astype(str)) - set(classes))
        raise StageError(f"package: the model does not predict class(es) {unknown}")
    return classification_metrics(labels.to_numpy(int), output[columns].to_numpy(float))


def evaluate(model: Any, rows: pd.DataFrame, actual: pd.Series, task: str) -> dict[str, float]:
    """Score a loaded pyfunc model (of this pipeline) on the held-out rows it needs."""
    inner = model.unwrap_python_model()
    return held_out_quality(inner.score(rows[inner.input_columns]), actual, task)


def judge(
    client: Any,
    name: str,
    version: str,
    challenger: dict,
    held_out: tuple,
    params: Params,
    split: dict,
) -> Decision:
    """The gate's decision on ``version`` against the current champion, if any: compared on
    the held-out rows only if the champion was trained on the same split (``split``)."""
    import mlflow

    current = version_by_alias(client, name, CHAMPION)
    champion_version = current.version if current is not None else None
    metric = params.gate_metric
    change = split_change(current.tags, split) if current is not None else ""
    if change:
        return lineage_decision(
            challenger, params.package.gate, metric, str(champion_version), change, version
        )
    try:
        champion = (
            evaluate(
                mlflow.pyfunc.load_model(f"models:/{name}/{champion_version}"),
                *held_out,
                params.train.task,
            )
            if current is not None
            else None
        )
    except Exception as exc:  # a champion this code cannot load or score (other task, classes)
        log.warning("champion v%s could not be scored: %s", champion_version, exc)
        return Decision(
            False,
            f"champion v{champion_version} could not be scored on the held-out rows ({exc}); "
            f"it stays: promote by hand with `python -m stages.registry promote --version "
            f"{version}`",
            metric,
            challenger[metric],
            champion_version=str(champion_version),
        )
    return gate_decision(challenger, champion, params.package.gate, metric, champion_version)


# ---- lineage and the model card ------------------------------------------------------------


def params_digest(params: Params) -> str:
    text = json.dumps(params.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train_run_id(client: Any, experiment_id: str, booster_md5: str) -> str:
    """The train run that wrote this booster (it tags its runs with the booster's MD5)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{BOOSTER_TAG}` = '{booster_md5}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else ""


def model_card(name: str, summary: dict, metrics: dict, params: Params, tags: dict) -> str:
    """A short Markdown model card of what the model is: the same bytes wherever the same
    data, params and code produce it (no registry version, run id or commit: those are
    machine-local and go to the registry, see ``registry_section``)."""
    pkg = params.package
    table = "\n".join(
        f"| {metric} | {metrics['cv'].get(metric, float('nan')):.6g} | {value:.6g} |"
        for metric, value in metrics["test"].items()
    )
    best = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in summary["best_trial"]["point"].items()
    )
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

## Known limits
{limits}
"""


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


def reproducible_mlmodel(folder: Path) -> None:
    """Make the saved model folder the same bytes wherever the same model is packaged: MLflow
    writes the build's absolute paths (the model code, a temporary artifact), a random
    ``model_uuid`` and the time into ``MLmodel``. The code and artifact paths become relative,
    the UUID is derived from the folder's content, and the time is left out (MLflow reads a
    missing one as the load time; the copy logged to MLflow keeps its own)."""
    path = folder / "MLmodel"
    model = yaml.safe_load(path.read_text())
    flavor = model["flavors"]["python_function"]
    flavor["model_code_path"] = Path(flavor["model_code_path"]).name
    for artifact in flavor.get("artifacts", {}).values():
        artifact["uri"] = artifact["path"]
    model.pop("utc_time_created", None)
    model["model_uuid"] = hashlib.md5(_folder_listing(folder, skip=path).encode()).hexdigest()  # noqa: S324
    write_text(yaml.safe_dump(model, default_flow_style=False), path)


def _folder_listing(folder: Path, skip: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != skip)
    return json.dumps([[str(p.relative_to(folder)), file_md5(p)] for p in files])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model-dir", type=Path, required=True, help="train's output folder")
    parser.add_argument("--raw", type=Path, required=True, help="raw table (input example)")
    parser.add_argument("--features", type=Path, required=True, help="featurize's output folder")
    parser.add_argument("--metrics", type=Path, required=True, help="train's metrics JSON")
    parser.add_argument("--validation", type=Path, required=True, help="raw validation report")
    parser.add_argument("--out", type=Path, required=True, help="MLflow model folder to write")
    parser.add_argument("--decision", type=Path, required=True, help="gate decision JSON")
    parser.add_argument("--card", type=Path, required=True, help="model card Markdown")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow

    args = _parse_args(argv)
    if not tracking_enabled():
        raise StageError(f"package: registers the model in MLflow; unset {TRACKING_SWITCH}=off")
    params = load_params(args.params)
    summary = read_json(args.model_dir / "summary.json")
    held_out = held_out_rows(args.features, params.featurize.target)
    split = split_definition(
        params.seed, params.featurize, raw_schema(args.raw), path_md5(args.raw)
    )
    inputs = {"booster": args.model_dir / "booster.txt", "summary": args.model_dir / "summary.json"}
    with (
        stage_run("package", params.package, inputs=inputs, in_process=True) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        kwargs = model_kwargs(args, params, summary, Path(scratch))
        with atomic_dir(args.out) as build:
            mlflow.pyfunc.save_model(str(build), **kwargs)
            reproducible_mlmodel(build)
        model = mlflow.pyfunc.load_model(str(args.out))
        challenger = evaluate(model, *held_out, params.train.task)
        tags = lineage_tags(params, split, args.validation)
        card = model_card(params.package.model_name, summary, read_json(args.metrics), params, tags)
        write_text(card, args.card)
        version, decision = register(run, kwargs, tags, card, (challenger, held_out), params, split)
        write_json(decision_record(decision, version), args.decision)
        run.log_artifact(args.card)
        run.log_artifact(args.decision)
        run.log_artifact(args.validation, "validation")
    state = "champion" if decision.promote else "challenger"
    log.info("%s v%s: %s (%s)", params.package.model_name, version, state, decision.reason)
    return 0


def model_kwargs(args: argparse.Namespace, params: Params, summary: dict, scratch: Path) -> dict:
    """What ``mlflow.pyfunc.save_model`` and ``log_model`` get: the model's code and
    artifacts (the booster, the served part of train's summary), an input example, pins."""
    pkg = params.package
    spec = FeatureSpec(**summary["spec"])
    raw = pd.read_parquet(args.raw, columns=spec.inputs)
    meta = {key: summary.get(key) for key in SERVED_SUMMARY} | {
        "max_batch_rows": pkg.max_batch_rows,
        "unseen_categories": pkg.unseen_categories,
    }
    write_json(meta, scratch / "metadata.json")
    return {
        "python_model": str(SERVING_CODE),
        "artifacts": {
            "booster": str(args.model_dir / "booster.txt"),
            "metadata": str(scratch / "metadata.json"),
        },
        "code_paths": [str(code_package(scratch))],
        "signature": False,  # the model checks requests itself (MLflow drops extra columns)
        "input_example": input_example(raw, spec, pkg.input_example_rows),
        "pip_requirements": pip_requirements(),
    }


def raw_schema(path: Path) -> list[str]:
    """The raw table's columns and types, as ``name: type`` (ingest's metadata form)."""
    import pyarrow.parquet as pq

    return [f"{field.name}: {field.type}" for field in pq.ParquetDataset(path).schema]


def lineage_tags(params: Params, split: dict, validation: Path) -> dict[str, str]:
    """The version's reproducible lineage: dvc.lock's data and model hashes, params, split."""
    return {
        **locked_hashes(Path("dvc.lock")),
        "params.sha256": params_digest(params),
        SPLIT_TAG: split_digest(split),
        SPLIT_DEFINITION_TAG: json.dumps(split, sort_keys=True),
        "validation.md5": file_md5(validation),
        "validation.report": f"validation/{validation.name}",  # an artifact of the package run
    }


def register(
    run: StageRun,
    kwargs: dict,
    tags: dict[str, str],
    card: str,
    scored: tuple[dict, tuple],
    params: Params,
    split: dict,
) -> tuple[str, Decision]:
    """Log and register the model as a new version (alias ``challenger``) with its lineage,
    let the gate decide on ``champion``, and record the decision. Returns (version, decision)."""
    import mlflow

    challenger, held_out = scored
    name = params.package.model_name
    logged = mlflow.pyfunc.log_model(name="model", registered_model_name=name, **kwargs)
    version = str(logged.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    booster_md5 = file_md5(Path(kwargs["artifacts"]["booster"]))
    tags = {
        **tags,
        **git_state(repo_root()),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "train.run_id": train_run_id(client, run.experiment_id, booster_md5),
        "validation.report": f"runs:/{run.run_id}/{tags['validation.report']}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    decision = judge(client, name, version, challenger, held_out, params, split)
    if decision.promote:
        set_champion(client, name, version)
    client.set_model_version_tag(name, version, "gate.decision", decision.reason)
    client.set_model_version_tag(name, version, "gate.comparable", str(decision.comparable))
    description = card + registry_section(version, decision, tags)
    client.update_model_version(name, version, description=description)
    run.log_metrics(
        {"gate.promoted": int(decision.promote), f"held_out.{decision.metric}": decision.challenger}
    )
    run.set_tags({"model.uri": logged.model_uri, "model.name": name, "model.version": version})
    return version, decision


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
