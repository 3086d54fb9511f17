"""Packaging: the trained booster as an MLflow pyfunc model that takes raw rows, its
registration with lineage, and the champion gate's evaluation.

The model is saved with models-from-code (``mlpipeline/serve/serving.py``): LightGBM's text booster
and a JSON spec as artifacts, ``mlpipeline/features/transform.py`` as code, no pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlpipeline.core.config import Params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import atomic_dir, file_md5, write_json, write_text
from mlpipeline.data.names import (
    BOOSTER_FILE,
    CHALLENGER,
    CHAMPION,
    MODEL_ARTIFACT,
    SHIPPED_FEATURES,
    TEST_ROWS_FILE,
)
from mlpipeline.data.sources import source_version
from mlpipeline.features import transform
from mlpipeline.features.transform import FeatureSpec
from mlpipeline.model.metrics import classification_metrics, regression_metrics
from mlpipeline.serve.card import registry_description
from mlpipeline.track.registry import (
    SPLIT_DEFINITION_TAG,
    SPLIT_TAG,
    Decision,
    blocked_by_slices,
    gate_decision,
    lineage_decision,
    locked_hashes,
    model_id_of,
    settled_promotion,
    slice_failures,
    split_change,
    split_digest,
    version_by_alias,
)
from mlpipeline.track.runs import (
    BOOSTER_TAG,
    EXECUTION_TAG,
    DatasetRef,
    StageRun,
    dataset_entity,
    execution_key,
    git_state,
    repo_root,
)

log = logging.getLogger(__name__)

SERVING_CODE = Path(__file__).with_name("serving.py")
FEATURES_CODE = Path(transform.__file__)
RUNTIME_PACKAGES = ("lightgbm", "numpy", "pandas", "numexpr")
# What the served model needs from train's summary (see serving.py).
SERVED_SUMMARY = ("task", "spec", "target", "target_transform", "classes", "features")
PACKAGE_TAG = "package.md5"  # on versions: the packaged folder's content (package_digest)


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

    A module of its own name, not ``mlpipeline``: MLflow puts the model's code folder first
    on ``sys.path`` when it loads a model, and a second, partial ``mlpipeline`` package there
    would shadow this repository's for anything imported afterwards (worker processes too).
    """
    module = folder / f"{SHIPPED_FEATURES}.py"
    shutil.copy2(FEATURES_CODE, module)
    return module


# ---- the gate's evaluation -----------------------------------------------------------------


def held_out_rows(features_dir: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """The test part's raw rows, whole (as a scoring job sends them), and the target."""
    rows = pd.read_parquet(features_dir / TEST_ROWS_FILE)
    return rows, rows[target]


def held_out_quality(output: Any, actual: pd.Series, task: str) -> dict[str, float]:
    """A packaged model's test metrics from its output on the held-out rows."""
    if task == "regression":
        return regression_metrics(actual.to_numpy(float), np.asarray(output, dtype=float))
    columns = [c for c in output.columns if c.startswith("probability_")]
    classes = [c.removeprefix("probability_") for c in columns]
    labels = actual.astype(str).map({c: i for i, c in enumerate(classes)})
    if labels.isna().any():
        unknown = sorted(set(actual.astype(str)) - set(classes))
        raise PipelineError(f"package: the model does not predict class(es) {unknown}")
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
    digest: str = "",
) -> Decision:
    """The gate's decision on ``version`` against the current champion, if any: compared on
    the held-out rows only if the champion was trained on the same split (``split``).
    ``digest``: the challenger's ``PACKAGE_TAG``."""
    current = version_by_alias(client, name, CHAMPION)
    gate, metric = params.package.gate, params.gate_metric
    if current is None:
        return gate_decision(challenger, None, gate, metric)
    if change := split_change(current.tags, split):
        return lineage_decision(challenger, gate, metric, str(current.version), change, version)
    if digest and current.tags.get(PACKAGE_TAG) == digest:  # the same packaged model: same scores
        return gate_decision(challenger, challenger, gate, metric, current.version)
    try:
        champion = score_version(name, current.version, held_out, params.train.task)
    except Exception as exc:  # a champion this code cannot load or score (other task, classes)
        log.warning("champion v%s could not be scored: %s", current.version, exc)
        return Decision(
            False,
            f"champion v{current.version} could not be scored on the held-out rows ({exc}); "
            f"it stays: promote by hand with `python -m mlpipeline registry promote --version "
            f"{version}`",
            metric,
            challenger[metric],
            champion_version=str(current.version),
        )
    return gate_decision(challenger, champion, gate, metric, current.version)


def package_digest(folder: Path) -> str:
    """A saved model folder's content digest: the ``model_uuid`` ``reproducible_mlmodel``
    derives from its files."""
    return str(yaml.safe_load((folder / "MLmodel").read_text())["model_uuid"])


def train_plot_images(run_id: str, out_dir: Path, names: list[str]) -> list[Path]:
    """The plot images (``plots/<name>.png``) the train run ``run_id`` logged, the same
    rendering of the same plot data, copied to ``out_dir``; [] if one of them is missing."""
    import mlflow

    if not run_id or not names:
        return []
    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots"))
    except Exception:  # no such artifacts (tracking was off for train, another store)
        return []
    images = [folder / f"{name}.png" for name in names]
    if not all(image.is_file() for image in images):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(image, out_dir / image.name)) for image in images]


def card_images(
    run: StageRun, booster: Path, plots_dir: Path, out_dir: Path, names: list[str]
) -> bool:
    """The card's plot images in ``out_dir``: those the train run that wrote ``booster``
    logged, else rendered from ``plots_dir``. False if there are none."""
    import mlflow

    from mlpipeline.track.plots import render_images

    train_run = train_run_id(mlflow.MlflowClient(), run.experiment_id, file_md5(booster))
    return bool(train_plot_images(train_run, out_dir, names) or render_images(plots_dir, out_dir))


def score_version(name: str, version: str, held_out: tuple, task: str) -> dict[str, float]:
    """A registered version's metrics on the held-out rows."""
    import mlflow

    return evaluate(mlflow.pyfunc.load_model(f"models:/{name}/{version}"), *held_out, task)


def params_digest(params: Params) -> str:
    """SHA-256 of the params that decide results (everything but ``runtime`` and ``rollout``,
    which say how models run and are served)."""
    decisive = params.model_dump(mode="json", by_alias=True, exclude={"runtime", "rollout"})
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def train_run_id(client: Any, experiment_id: str, booster_md5: str) -> str:
    """The train run that wrote this booster (it tags its runs with the booster's MD5). The
    same data and params give the same booster in every clone and experiment, so among the
    runs that wrote it: the one of this pipeline execution, else of this DVC experiment, else
    the newest."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{BOOSTER_TAG}` = '{booster_md5}'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    if not runs:
        return ""
    here = {EXECUTION_TAG: execution_key(), "dvc.exp_name": os.environ.get("DVC_EXP_NAME", "")}
    for key, value in here.items():
        if value and (found := [r for r in runs if r.data.tags.get(key) == value]):
            return found[0].info.run_id
    return runs[0].info.run_id


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


BUILD_TOOLS = ("pip", "setuptools", "wheel")


def unpinned_build_tools(folder: Path) -> None:
    """Leave the build tools unpinned in the model's environment files. MLflow writes the
    pip and setuptools versions of the venv that packaged the model (``pip==26.3`` in
    ``python_env.yaml``, ``pip<=26.3`` in ``conda.yaml``), so a venv with its bundled pip
    packaged other bytes from the same model; the model needs no particular one."""
    env_path, conda_path = folder / "python_env.yaml", folder / "conda.yaml"
    if env_path.exists():
        env = yaml.safe_load(env_path.read_text())
        env["build_dependencies"] = list(BUILD_TOOLS)
        write_text(yaml.safe_dump(env, default_flow_style=False, sort_keys=False), env_path)
    if conda_path.exists():
        conda = yaml.safe_load(conda_path.read_text())
        conda["dependencies"] = [
            "pip" if isinstance(dep, str) and _tool_name(dep) == "pip" else dep
            for dep in conda["dependencies"]
        ]
        write_text(yaml.safe_dump(conda, default_flow_style=False, sort_keys=False), conda_path)


def _tool_name(requirement: str) -> str:
    return re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0].strip().lower()


def _folder_listing(folder: Path, skip: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != skip)
    return json.dumps([[str(p.relative_to(folder)), file_md5(p)] for p in files])


def model_kwargs(
    model_dir: Path, raw_path: Path, params: Params, summary: dict, scratch: Path
) -> dict:
    """What ``mlflow.pyfunc.save_model`` and ``log_model`` get: the model's code and
    artifacts (the booster, the served part of train's summary), an input example, pins."""
    pkg = params.package
    spec = FeatureSpec(**summary["spec"])
    raw = pd.read_parquet(raw_path, columns=spec.inputs)
    meta = {key: summary.get(key) for key in SERVED_SUMMARY} | {
        "max_batch_rows": pkg.max_batch_rows,
        "unseen_categories": pkg.unseen_categories,
    }
    write_json(meta, scratch / "metadata.json")
    return {
        "python_model": str(SERVING_CODE),
        "artifacts": {
            "booster": str(model_dir / BOOSTER_FILE),
            "metadata": str(scratch / "metadata.json"),
        },
        "code_paths": [str(code_package(scratch))],
        "signature": params_only_signature(),
        "input_example": input_example(raw, spec, pkg.input_example_rows),
        "pip_requirements": pip_requirements(),
    }


def params_only_signature() -> Any:
    """A signature of request params only (``explain``: boolean, default false): the model
    checks the rows itself, so there is no input schema (MLflow would drop extra columns
    and re-type the rest before the model's own checks could name them)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(params=ParamSchema([ParamSpec("explain", "boolean", False)]))


def raw_schema(path: Path) -> list[str]:
    """The raw table's columns and types, as ``name: type`` (ingest's metadata form)."""
    import pyarrow.parquet as pq

    return [f"{field.name}: {field.type}" for field in pq.ParquetDataset(path).schema]


def lineage_tags(params: Params, split: dict, validation: Path, package: Path) -> dict[str, str]:
    """The version's reproducible lineage: dvc.lock's data and model hashes, params, split,
    the saved model folder's content digest."""
    return {
        **locked_hashes(Path("dvc.lock")),
        **source_version(Path()),  # the source table: path, MD5, an import's origin version
        PACKAGE_TAG: package_digest(package),
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
    slices: dict | None = None,
) -> tuple[str, Decision]:
    """Log and register the model as a new version (alias ``challenger``) with its lineage,
    let the gate decide on ``champion`` (``slices``: the test metric by segment, for
    ``package.gate.slices``), and record the decision. Returns (version, decision)."""
    import mlflow

    challenger, held_out = scored
    name = params.package.model_name
    logged = mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, registered_model_name=name, **kwargs)
    version = str(logged.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    tags = {**tags, **machine_tags(client, run, kwargs, tags)}
    set_version_tags(client, name, version, tags)
    failures = slice_failures(slices, params.package.gate.slices)
    digest = tags.get(PACKAGE_TAG, "")

    def decide() -> Decision:
        verdict = judge(client, name, version, challenger, held_out, params, split, digest)
        return blocked_by_slices(verdict, failures)

    decision = settled_promotion(client, name, version, decide)
    gate = {"gate.decision": decision.reason, "gate.comparable": str(decision.comparable)}
    set_version_tags(client, name, version, gate)
    description = registry_description(card, run.run_id, version, decision, tags)
    client.update_model_version(name, version, description=description)
    run.log_metrics(
        {"gate.promoted": int(decision.promote), f"held_out.{decision.metric}": decision.challenger}
    )
    run.set_tags({"model.uri": logged.model_uri, "model.name": name, "model.version": version})
    return version, decision


MODEL_LINEAGE_TAGS = (
    "train.run_id",
    "git.commit",
    "params.sha256",
    "data.raw.md5",
    "data.features.md5",
)


def link_logged_model(
    name: str, version: str, test_metrics: dict, test: DatasetRef, summary: dict
) -> str:
    """Make the registered version's LoggedModel (MLflow 3: the model id the version resolves
    to) carry what describes it: the test metrics, linked to the test features dataset they
    were measured on; the best parameters; the lineage tags. The train run lists it among its
    outputs (logged models). Returns the model id."""
    import mlflow
    from mlflow.entities import LoggedModelOutput

    client = mlflow.MlflowClient()
    found = client.get_model_version(name, version)
    model_id = model_id_of(found)
    if not model_id:
        raise PipelineError(f"package: {name} v{version} resolves to no MLflow LoggedModel")
    numeric = {f"test.{k}": float(v) for k, v in test_metrics.items()}
    mlflow.log_metrics(numeric, model_id=model_id, dataset=dataset_entity(test))
    point = summary.get("best_trial", {}).get("point", {})
    mlflow.log_model_params({k: str(v) for k, v in point.items()}, model_id=model_id)
    tags = {k: found.tags[k] for k in MODEL_LINEAGE_TAGS if found.tags.get(k)}
    mlflow.set_logged_model_tags(model_id, {**tags, "model.name": name, "model.version": version})
    if train_run := found.tags.get("train.run_id"):
        client.log_outputs(train_run, [LoggedModelOutput(model_id, 0)])
    return model_id


def machine_tags(client: Any, run: StageRun, kwargs: dict, tags: dict) -> dict[str, str]:
    """The version's lineage on this machine: commit, experiment, runs."""
    booster_md5 = file_md5(Path(kwargs["artifacts"]["booster"]))
    return {
        **git_state(repo_root()),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "train.run_id": train_run_id(client, run.experiment_id, booster_md5),
        "validation.report": f"runs:/{run.run_id}/{tags['validation.report']}",
    }


def set_version_tags(client: Any, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def save_model(out: Path, kwargs: dict) -> Any:
    """Save the pyfunc model to ``out`` (atomically, reproducible bytes); the loaded model."""
    import mlflow

    with atomic_dir(out) as build:
        mlflow.pyfunc.save_model(str(build), **kwargs)
        unpinned_build_tools(build)
        reproducible_mlmodel(build)
    return mlflow.pyfunc.load_model(str(out))
