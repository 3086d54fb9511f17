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

from stages import cli
from stages.errors import StageError
from stages.features import FeatureSpec
from stages.files import atomic_dir, file_md5, read_json, write_json, write_text
from stages.metrics import classification_metrics, regression_metrics
from stages.params import Params, load_params
from stages.registry import (
    CHALLENGER,
    CHAMPION,
    Decision,
    decision_record,
    gate_decision,
    locked_hashes,
    set_champion,
    version_by_alias,
)
from stages.tracking import (
    BOOSTER_TAG,
    TRACKING_SWITCH,
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


def model_kwargs(booster: Path, meta: Path, code: Path, example: pd.DataFrame) -> dict:
    return {
        "python_model": str(SERVING_CODE),
        "artifacts": {"booster": str(booster), "metadata": str(meta)},
        "code_paths": [str(code)],
        "signature": False,  # the model checks requests itself (MLflow drops extra columns)
        "input_example": example,
        "pip_requirements": pip_requirements(),
    }


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
    client: Any, name: str, version: str, challenger: dict, held_out: tuple, params: Params
) -> Decision:
    """The gate's decision on ``version`` against the current champion, if any."""
    import mlflow

    current = version_by_alias(client, name, CHAMPION)
    champion_version = current.version if current is not None else None
    metric = params.gate_metric
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


def model_card(
    name: str,
    version: str,
    summary: dict,
    metrics: dict,
    decision: Decision,
    params: Params,
    tags: dict[str, str],
) -> str:
    """A short Markdown model card."""
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
    verdict = "promoted to champion" if decision.promote else "champion kept"
    unseen = "refused" if pkg.unseen_categories == "reject" else "treated as missing"
    raw, features = tags.get("data.raw.md5", "?"), tags.get("data.features.md5", "?")
    model, digest = tags.get("model.lgbm.md5", "?"), tags["params.sha256"][:16]
    return f"""# Model card: {name} v{version}

**Task:** {summary.get("task", "regression")} on `{summary["target"]}`
({params.train.objective} objective). **Gate:** {verdict} — {decision.reason}.

## Intended use
{pkg.intended_use or "(not stated: set package.intended_use)"}

## Data
- Raw data MD5 `{raw}`, features `{features}`, model `{model}` (dvc.lock);
  params SHA-256 `{digest}`
- Git commit `{tags.get("git.commit", "?")}`, DVC experiment `{tags.get("dvc.exp_name") or "-"}`,
  train run `{tags.get("train.run_id") or "?"}`
- Validation report: `{tags.get("validation.report", "?")}`

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
    pkg, task, name = params.package, params.train.task, params.package.model_name
    summary = read_json(args.model_dir / "summary.json")
    spec = FeatureSpec(**summary["spec"])
    booster_path = args.model_dir / "booster.txt"
    example = input_example(
        pd.read_parquet(args.raw, columns=spec.inputs), spec, pkg.input_example_rows
    )
    meta = {key: summary.get(key) for key in SERVED_SUMMARY} | {
        "max_batch_rows": pkg.max_batch_rows,
        "unseen_categories": pkg.unseen_categories,
    }
    rows, actual = held_out_rows(args.features, params.featurize.target)
    inputs = {"booster": booster_path, "summary": args.model_dir / "summary.json"}
    with (
        stage_run("package", pkg, inputs=inputs, in_process=True) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        meta_path = Path(scratch) / "metadata.json"
        write_json(meta, meta_path)
        kwargs = model_kwargs(booster_path, meta_path, code_package(Path(scratch)), example)
        with atomic_dir(args.out) as build:
            mlflow.pyfunc.save_model(str(build), **kwargs)
        challenger = evaluate(mlflow.pyfunc.load_model(str(args.out)), rows, actual, task)
        logged = mlflow.pyfunc.log_model(name="model", registered_model_name=name, **kwargs)
        version = str(logged.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, CHALLENGER, version)
        run.log_artifact(args.validation, "validation")
        tags = {
            **git_state(repo_root()),
            "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
            **locked_hashes(Path("dvc.lock")),
            "params.sha256": params_digest(params),
            "train.run_id": train_run_id(client, run.experiment_id, file_md5(booster_path)),
            "validation.report": f"runs:/{run.run_id}/validation/{args.validation.name}",
            "validation.md5": file_md5(args.validation),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        decision = judge(client, name, version, challenger, (rows, actual), params)
        if decision.promote:
            set_champion(client, name, version)
        client.set_model_version_tag(name, version, "gate.decision", decision.reason)
        card = model_card(name, version, summary, read_json(args.metrics), decision, params, tags)
        client.update_model_version(name, version, description=card)
        write_json(decision_record(decision, version), args.decision)
        write_text(card, args.card)
        run.log_metrics(
            {
                "gate.promoted": int(decision.promote),
                f"held_out.{decision.metric}": decision.challenger,
            }
        )
        run.set_tags({"model.uri": logged.model_uri, "model.name": name, "model.version": version})
        run.log_artifact(args.card)
        run.log_artifact(args.decision)
    log.info(
        "%s v%s: %s (%s)",
        name,
        version,
        "champion" if decision.promote else "challenger",
        decision.reason,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
