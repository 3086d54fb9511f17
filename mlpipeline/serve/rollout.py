"""Rolling a challenger out: the router model built from the registry's champion and challenger.

``python -m mlpipeline rollout build`` copies both registered versions' boosters, metadata and
featurization into one models-from-code model (``mlpipeline/serve/router.py``), with the settings of
``params.yaml``'s ``rollout`` section, and registers it as a version of
``<package.model_name>-router`` with the alias ``live``; ``mlflow models serve -m
models:/<name>-router@live`` serves it. Self-contained, no pickle: the served router needs
neither the registry nor this repository.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlpipeline.core.config import Params, RolloutParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_json
from mlpipeline.data.names import (
    CHALLENGER,
    CHAMPION,
    LIVE,
    ROUTER_SUFFIX,
    SHIPPED_FEATURES,
    SHIPPED_LIVE,
)
from mlpipeline.serve.live import LOG_ENV
from mlpipeline.serve.packaging import params_only_signature, pip_requirements
from mlpipeline.track.registry import version_by_alias
from mlpipeline.track.runs import ROLE_TAG, StageRun

log = logging.getLogger(__name__)

ROUTER_CODE = Path(__file__).with_name("router.py")
LIVE_CODE = Path(__file__).with_name("live.py")
ROUTER_ARTIFACT = "router"  # the logged model's name in its run


def router_name(model_name: str) -> str:
    return f"{model_name}{ROUTER_SUFFIX}"


def router_settings(rollout: RolloutParams, versions: dict[str, str]) -> dict[str, Any]:
    """What the router reads at load (``rollout.json``): the mode, the canary share and its
    salt (the challenger's version: a new challenger gets a new draw of keys), the log, and
    each member's version and featurization module."""
    return {
        "mode": rollout.mode,
        "canary_share": rollout.canary_share,
        "salt": versions.get("challenger", ""),
        "key_column": rollout.key_column,
        "log_dir": rollout.log_dir,
        "log_inputs": rollout.log_inputs,
        "rotate_bytes": rollout.rotate_bytes,
        "members": {
            role: {"version": str(v), "features_module": f"{SHIPPED_FEATURES}_{role}"}
            for role, v in versions.items()
        },
    }


def member_files(folder: Path) -> dict[str, Path]:
    """A packaged model's booster, metadata and featurization code, found through its
    ``MLmodel`` (a model of this pipeline: ``mlpipeline/serve/serving.py``)."""
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    artifacts = flavor.get("artifacts") or {}
    code = folder / (flavor.get("code") or "code") / f"{SHIPPED_FEATURES}.py"
    if not {"booster", "metadata"} <= set(artifacts) or not code.is_file():
        raise PipelineError(
            f"rollout: {folder} is not a model packaged by this pipeline (it has no booster, "
            "metadata or featurization): only versions registered by the package stage roll out"
        )
    return {
        "booster": folder / artifacts["booster"]["path"],
        "metadata": folder / artifacts["metadata"]["path"],
        "features": code,
    }


def router_kwargs(members: dict[str, Path], settings: dict, scratch: Path) -> dict:
    """What ``mlflow.pyfunc.save_model`` / ``log_model`` get for a router of the packaged
    models in ``members`` (role -> model folder)."""
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy2(LIVE_CODE, scratch / f"{SHIPPED_LIVE}.py")
    code_paths = [str(scratch / f"{SHIPPED_LIVE}.py")]
    artifacts = {}
    for role, folder in members.items():
        files = member_files(folder)
        for kind, suffix in (("booster", ".txt"), ("metadata", ".json")):
            copy = scratch / f"{role}_{kind}{suffix}"  # artifacts are kept by file name
            shutil.copy2(files[kind], copy)
            artifacts[f"{role}_{kind}"] = str(copy)
        module = scratch / f"{settings['members'][role]['features_module']}.py"
        shutil.copy2(files["features"], module)
        code_paths.append(str(module))
    write_json(settings, scratch / "rollout.json")
    artifacts["rollout"] = str(scratch / "rollout.json")
    return {
        "python_model": str(ROUTER_CODE),
        "artifacts": artifacts,
        "code_paths": code_paths,
        "signature": params_only_signature(),  # it checks the rows itself, as the model does
        "pip_requirements": pip_requirements(),
    }


def rollout_versions(client: Any, name: str, mode: str) -> dict[str, str]:
    """The champion's version, and the challenger's unless the mode is ``off``."""
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        raise PipelineError(
            f"rollout: model '{name}' has no champion: run `dvc repro` (the package stage "
            "registers and promotes), or `python -m mlpipeline registry promote --version N`"
        )
    versions = {"champion": str(champion.version)}
    if mode == "off":
        return versions
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None or str(challenger.version) == versions["champion"]:
        raise PipelineError(
            f"rollout: mode '{mode}' needs a challenger other than the champion "
            f"(v{champion.version}): `dvc repro` registers each new model as the challenger; "
            "or set rollout.mode: off (or --mode off)"
        )
    return versions | {"challenger": str(challenger.version)}


def download(name: str, versions: dict[str, str], scratch: Path) -> dict[str, Path]:
    """Each registered version's model folder, downloaded under ``scratch``."""
    import mlflow

    return {
        role: Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version}", dst_path=str(scratch / role)
            )
        )
        for role, version in versions.items()
    }


def smoke_test(router_dir: Path, champion_dir: Path, mode: str) -> None:
    """The router loads and answers the champion's input example (as the champion does,
    unless in canary mode), with the prediction log off."""
    import mlflow
    from mlflow.models import Model

    example = Model.load(champion_dir).load_input_example(str(champion_dir))
    if example is None:
        log.warning("rollout: the champion has no input example; the router is not checked")
        return
    before = os.environ.get(LOG_ENV)
    os.environ[LOG_ENV] = "off"
    try:
        answer = mlflow.pyfunc.load_model(str(router_dir)).predict(example)
        expected = mlflow.pyfunc.load_model(str(champion_dir)).predict(example)
    finally:
        if before is None:
            del os.environ[LOG_ENV]
        else:
            os.environ[LOG_ENV] = before
    if mode != "canary" and not _same(answer, expected):
        raise PipelineError("rollout: the router does not answer as the champion does")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=0))


def build_router(run: StageRun, params: Params, rollout: RolloutParams, scratch: Path) -> dict:
    """Build, check and register the router; the new version gets the alias ``live``.
    Returns what was built (name, version, mode, members)."""
    import mlflow

    client = mlflow.MlflowClient()
    name = params.package.model_name
    versions = rollout_versions(client, name, rollout.mode)
    folders = download(name, versions, scratch)
    settings = router_settings(rollout, versions)
    kwargs = router_kwargs(folders, settings, scratch / "router")
    local = scratch / "saved"
    mlflow.pyfunc.save_model(str(local), **kwargs)
    smoke_test(local, folders["champion"], rollout.mode)
    router = router_name(name)
    logged = mlflow.pyfunc.log_model(name=ROUTER_ARTIFACT, registered_model_name=router, **kwargs)
    version = str(logged.registered_model_version)
    tags = {f"rollout.{role}": v for role, v in versions.items()} | {
        "rollout.mode": rollout.mode,
        "rollout.canary_share": str(rollout.canary_share),
        "rollout.model": name,
    }
    for key, value in tags.items():
        client.set_model_version_tag(router, version, key, value)
    client.set_registered_model_alias(router, LIVE, version)
    run.set_tags({ROLE_TAG: "rollout", **tags, "model.name": router, "model.version": version})
    return {"router": router, "version": version, "mode": rollout.mode, "versions": versions}
