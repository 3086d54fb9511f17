"""MLflow bookkeeping shared by every stage.

Each stage opens one run (``stage_run``). The runs of one pipeline execution are children of
one parent run, found by the ``pipeline.execution`` tag: a ``dvc repro`` or ``dvc exp run``
process is one execution. Every run carries the git commit, the DVC experiment name and the
MD5 of each file the stage read (the same digests ``dvc.lock`` records).

MLflow is imported lazily, inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from mlpipeline.core.config import flatten
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import path_md5
from mlpipeline.data.sources import source_version

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "dvc-pipeline"
STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
EXECUTION_TAG = "pipeline.execution"
STAGE_TAG = "pipeline.stage"
ROLE_TAG = "pipeline.role"
EXPERIMENT_COPIES = (".dvc", "tmp", "exps")  # where DVC runs temporary and queued experiments
BOOSTER_TAG = "output.booster.md5"  # on train runs: the package stage finds its train run by it
# The UI opens an experiment of this kind on its runs (training runs), not MLflow 3's GenAI
# overview (traces, token usage).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def repo_root() -> Path:
    """The DVC project root: ``DVC_ROOT`` when DVC runs the stage, else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def store_root(root: Path) -> Path:
    """Where the default tracking store lives: the workspace root, also for experiments DVC
    runs in a temporary copy (``dvc exp run --temp``, queued experiments), which sits under
    ``<workspace>/.dvc/tmp/exps/`` and is deleted afterwards."""
    parts = root.parts
    for i in range(len(parts) - len(EXPERIMENT_COPIES) + 1):
        if parts[i : i + len(EXPERIMENT_COPIES)] == EXPERIMENT_COPIES:
            return Path(*parts[:i])
    return root


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store at the workspace root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(root) / STORE_FILE}"


STORE_LOCK_SECONDS = 600  # how long a stage waits for another one creating the store


def connect(root: Path) -> str:
    """Point MLflow at the tracking store (``tracking_uri``) and make sure the store exists,
    created or migrated by one process at a time; returns the URI.

    MLflow creates a new SQLite store's tables, and migrates an old one, when a process first
    opens it; two processes doing that at once fail (``duplicate column name``). Every
    process therefore opens a SQLite store for the first time under an inter-process file
    lock beside it, so stages and queued experiments starting at the same moment all log.
    A store that cannot be opened raises ``PipelineError`` naming it and what to do."""
    import mlflow

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    try:
        if uri.startswith("sqlite:///"):
            from filelock import FileLock

            database = Path(uri.removeprefix("sqlite:///"))
            database.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(f"{database}.lock", timeout=STORE_LOCK_SECONDS):
                _open_stores(uri)
        else:
            _open_stores(uri)
    except Exception as exc:  # SQLAlchemy, MLflow, network and lock errors alike
        raise PipelineError(store_problem(uri, exc)) from exc
    return uri


def _open_stores(uri: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    client.search_experiments(max_results=1)  # the tracking tables, created or migrated
    client.search_registered_models(max_results=1)  # ...and the model registry's


def is_store_error(exc: BaseException) -> bool:
    """An error of the tracking store (MLflow, its database or its server), not the stage's."""
    return type(exc).__module__.split(".")[0] in {"mlflow", "sqlalchemy", "sqlite3", "requests"}


def store_problem(uri: str, exc: BaseException) -> str:
    """What went wrong with the tracking store, and what to do, in one message."""
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    if uri.startswith("sqlite:///"):
        advice = (
            f"if the file is damaged or from another MLflow version, move it aside "
            f"(`mv {uri.removeprefix('sqlite:///')} mlflow.db.bak`) or run `mlflow db upgrade "
            f"{uri}`"
        )
    else:
        advice = "check that the server runs and MLFLOW_TRACKING_URI names it"
    return (
        f"MLflow tracking store {uri}: {reason}. To fix: {advice}; or set MLFLOW_TRACKING_URI "
        f"to another store, or {TRACKING_SWITCH}=off to run without tracking."
    )


def artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite store (MLflow's default would be ``./mlruns`` in the working
    directory); a tracking server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / ARTIFACT_DIR).as_uri()


def git_state(root: Path) -> dict[str, str]:
    """The commit checked out at ``root`` and whether the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit or "unknown", "git.dirty": str(bool(dirty)).lower()}


def execution_key() -> str:
    """Identify this pipeline execution: the enclosing ``dvc`` process and DVC experiment."""
    if explicit := os.environ.get("PIPELINE_EXECUTION_ID"):
        return explicit
    import psutil

    proc = psutil.Process()
    for parent in proc.parents():
        try:
            cmdline = parent.cmdline()
        except psutil.Error:
            continue
        if any(Path(part).name == "dvc" for part in cmdline[:3]):
            proc = parent
            break
    seed = f"{proc.pid}:{proc.create_time()}:{os.environ.get('DVC_EXP_NAME', '')}"
    return hashlib.sha1(seed.encode()).hexdigest()[:16]  # noqa: S324 - an id, not security


TRACKING_SWITCH = "PIPELINE_TRACKING"
HELPER_NICENESS = 10


def tracking_enabled() -> bool:
    """False when ``PIPELINE_TRACKING=off``: stages log nothing to MLflow (quick local runs,
    and the tracking-overhead benchmark). Packaging needs the registry and refuses."""
    return os.environ.get(TRACKING_SWITCH, "on").strip().lower() not in {"off", "0", "false"}


@dataclass(frozen=True)
class DatasetRef:
    """A table a stage read or wrote, as MLflow's Datasets panel lists it: ``name`` (raw,
    train, test), ``path`` as dvc.yaml names it (a Parquet file or a folder of parts), the
    ``context`` it was used in (raw, validation, training, testing) and its ``target``."""

    name: str
    path: str
    context: str
    target: str | None = None


SCHEMA_SAMPLE_ROWS = 1000  # MLflow infers a schema value by value: 1.5 s for 54k rows


def dataset_entity(ref: DatasetRef) -> Any:
    """The MLflow dataset of ``ref``: its digest is the MD5 dvc.lock records for the file
    (``path_md5``), its source the path, its profile the row count (from the Parquet metadata)
    and the target; the schema is inferred from the first rows only."""
    import mlflow
    import pandas as pd
    import pyarrow.dataset as pads
    from mlflow.entities import Dataset

    table = pads.dataset(ref.path, format="parquet")
    sample = table.head(SCHEMA_SAMPLE_ROWS).to_pandas()
    categories = [c for c in sample.columns if isinstance(sample[c].dtype, pd.CategoricalDtype)]
    sample = sample.astype(dict.fromkeys(categories, object))  # MLflow cannot infer categories
    rows = table.count_rows()
    with warnings.catch_warnings():  # its hint on integer columns, meant for model signatures
        warnings.simplefilter("ignore")
        described = mlflow.data.from_pandas(
            sample, name=ref.name, targets=ref.target, digest=path_md5(Path(ref.path))
        ).to_dict()
    profile = {"num_rows": rows, "num_elements": rows * sample.shape[1]}
    return Dataset(
        **described
        | {
            "source_type": "local",
            "source": json.dumps({"uri": ref.path}),
            "profile": json.dumps(profile | ({"targets": ref.target} if ref.target else {})),
        }
    )


@dataclass(frozen=True)
class RunRequest:
    """What a stage's run is opened with: plain values, so it can travel to a helper process."""

    stage: str
    params: dict[str, str]
    inputs: dict[str, str]
    pipeline: bool
    project_run: str | None


class StageRun:
    """The MLflow run of one stage. Each call returns at once and is carried out, in order,
    by the run's executor: a helper process by default (importing MLflow and opening its
    store takes about 3 s here, which then overlaps the stage's own work), this process
    (``in_process``: a stage that calls MLflow itself, as ``package`` does), or nobody
    (tracking off: calls are dropped). ``close`` waits for every call and raises the first
    error, so a stage still fails when its tracking fails."""

    def __init__(self, request: RunRequest | None, executor: Executor | None) -> None:
        self._executor = executor
        self._calls: list[Future] = []
        self._opened = self._submit(_open, request)

    def _submit(self, function: Callable, *args: Any) -> Future | None:
        if self._executor is None:
            return None
        future = self._executor.submit(function, *args)
        self._calls.append(future)
        return future

    @property
    def run_id(self) -> str:
        return self._opened.result()[0] if self._opened else ""

    @property
    def experiment_id(self) -> str:
        return self._opened.result()[1] if self._opened else ""

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """Log the numeric values of a (nested) mapping, as dotted keys, in one request."""
        self._submit(_log_metrics, flatten(dict(metrics), prefix))

    def log_series(self, series: Mapping[str, Sequence[float]]) -> None:
        """Log each list of values as one metric with steps 0, 1, ... in one request."""
        self._submit(_log_series, {k: [float(v) for v in vs] for k, vs in series.items()})

    def log_child(self, record: Mapping[str, Any]) -> None:
        """A finished child run (``name``, ``params``, ``metrics``, ``tags``), in three requests
        whatever its size."""
        tags = {k: str(v) for k, v in record.get("tags", {}).items()}
        params = flatten(dict(record.get("params", {})))
        self._submit(_log_child, record["name"], params, dict(record["metrics"]), tags)

    def log_params(self, params: Any) -> None:
        """Log a (nested) mapping or params model as flat, dotted params."""
        self._submit(_log_params, flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._submit(_set_tags, {k: _short(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._submit(_log_artifact, Path(path).resolve(), artifact_path)

    def log_dataset(self, name: str, path: Path, context: str, target: str | None = None) -> None:
        """List a table the stage read or wrote among the run's datasets (``DatasetRef``);
        the executor reads the file's metadata and first rows, not the whole table."""
        self._submit(_log_dataset, DatasetRef(name, str(path), context, target))

    def log_plot_images(self, plots_dir: Path, artifact_path: str = "plots") -> None:
        """Render the DVC plots whose data is in ``plots_dir`` to PNG (``mlpipeline.track.plots``)
        and log them, from a temporary folder, under ``artifact_path``."""
        self._submit(_log_plot_images, Path(plots_dir).resolve(), artifact_path)

    def close(self, status: str, raise_errors: bool = True) -> str:
        """End the run with ``status`` once every call is done; the tracking URI, or "" if
        the run could not be recorded (then the first error is raised if ``raise_errors``,
        else logged, so it does not hide the stage's own error)."""
        if self._executor is None:
            return ""
        errors = [e for call in self._calls if (e := call.exception()) is not None]
        uri = ""
        try:
            uri = self._executor.submit(_close, status).result()
        except Exception as exc:  # MLflow's, or the helper died (BrokenProcessPool)
            errors.append(exc)
        self._executor.shutdown()
        if errors and raise_errors:
            raise errors[0]
        for error in errors:
            log.error("MLflow: %s", error)
        return uri


class InProcess(Executor):
    """An executor that runs each call at once, in this process (errors kept in its future)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _helper() -> Executor:
    """One helper process, forked where possible (it starts with the stage's imports in place;
    spawn would import them again, ~1 s), at a lower CPU priority: bookkeeping takes the cores
    the stage leaves idle instead of slowing its workers. It only talks to MLflow, never to
    the native thread pools (OpenMP, Arrow) a forked copy must not touch."""
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_lower_priority)


def _lower_priority() -> None:
    if hasattr(os, "nice"):
        os.nice(HELPER_NICENESS)


def _short(value: Any, limit: int = 6000) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def stage_run(
    stage: str,
    params: Any,
    inputs: Mapping[str, Path],
    pipeline: bool = True,
    in_process: bool = False,
) -> Iterator[StageRun]:
    """Open the MLflow run of ``stage``, under this execution's parent run if ``pipeline``.

    Logs ``params`` (flattened) and the lineage tags; marks the run FAILED if the body raises.
    With ``PIPELINE_TRACKING=off`` the stage gets a run that logs nothing.
    """
    run = StageRun(*_run_setup(stage, params, inputs, pipeline, in_process))
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except Exception as exc:  # the store refusing a call the stage made itself: no traceback
        if not is_store_error(exc):
            raise
        raise PipelineError(store_problem(tracking_uri(repo_root()), exc)) from exc
    finally:
        try:
            uri = run.close(status, raise_errors=status == "FINISHED")
        except Exception as exc:
            if not is_store_error(exc):
                raise
            raise PipelineError(store_problem(tracking_uri(repo_root()), exc)) from exc
        if run._executor is not None and uri:
            page = f"#/experiments/{run.experiment_id}/runs/{run.run_id}"
            log.info("MLflow run %s (%s) in %s; UI page %s", run.run_id, status, uri, page)
        elif run._executor is not None:
            log.info("MLflow run ? (%s) not recorded", status)


def _run_setup(
    stage: str, params: Any, inputs: Mapping[str, Path], pipeline: bool, in_process: bool
) -> tuple[RunRequest | None, Executor | None]:
    if not tracking_enabled():
        log.info("MLflow tracking off (%s=off)", TRACKING_SWITCH)
        return None, None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    request = RunRequest(
        stage=stage,
        params={k: _short(v) for k, v in flatten(params).items()},
        inputs={name: str(path) for name, path in inputs.items()},
        pipeline=pipeline,
        # Under `mlflow run` (MLproject) the project's run is the parent. MLflow would
        # otherwise resume that run in start_run, so the variable is consumed here.
        project_run=os.environ.pop("MLFLOW_RUN_ID", None),
    )
    return request, InProcess() if in_process else _helper()


# ---- what the executor runs: on the run opened in its process -------------------------------

_HELD: dict[str, Any] = {}  # the executing process's open run: ids and parent


def _open(request: RunRequest) -> tuple[str, str]:
    """Start the stage's run (and find or create the execution's parent run)."""
    import mlflow

    root = repo_root()
    uri = connect(root)
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, artifact_location(uri))
    if request.project_run:
        experiment_id = client.get_run(request.project_run).info.experiment_id
    execution = execution_key()
    parent_id = None
    if request.pipeline:
        parent_id = request.project_run or _parent_run_id(client, experiment_id, execution)
    tags = _run_tags(root, request, execution, parent_id)
    if parent_id and not request.project_run:  # `mlflow run` manages its own run's status
        client.update_run(parent_id, status="RUNNING")
    run = mlflow.start_run(experiment_id=experiment_id, run_name=request.stage, tags=tags)
    _HELD.update(run_id=run.info.run_id, experiment_id=experiment_id, parent_id=parent_id)
    _HELD["project_run"] = request.project_run
    _HELD["source"] = {k: v for k, v in tags.items() if k.startswith("data.source")}
    mlflow.log_params(request.params)
    return run.info.run_id, experiment_id


def _run_tags(root: Path, request: RunRequest, execution: str, parent_id: str | None) -> dict:
    tags = {
        **git_state(root),
        **source_version(root),  # the source table's version, as dvc.lock records it
        **{f"data.{name}.md5": path_md5(Path(path)) for name, path in request.inputs.items()},
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc.stage": os.environ.get("DVC_STAGE", request.stage),
        STAGE_TAG: request.stage,
        EXECUTION_TAG: execution,
    }
    tags["mlflow.source.git.commit"] = tags["git.commit"]
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return tags


def _log_metrics(flat: dict[str, Any]) -> None:
    """The run's own metrics, in one request (``log_batch``: unlike ``mlflow.log_metrics``,
    it does not also attach them to the models the run has logged)."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    numeric = [Metric(k, float(v), now, 0) for k, v in flat.items() if isinstance(v, int | float)]
    if numeric:
        mlflow.MlflowClient().log_batch(_HELD["run_id"], metrics=numeric)


def _log_series(series: dict[str, list[float]]) -> None:
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, step)
        for key, values in series.items()
        for step, value in enumerate(values)
    ]
    mlflow.MlflowClient().log_batch(_HELD["run_id"], metrics=metrics)


def _log_child(name: str, params: dict, metrics: dict, tags: dict) -> None:
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    child = client.create_run(
        _HELD["experiment_id"],
        run_name=name,
        tags={"mlflow.parentRunId": _HELD["run_id"], **_HELD.get("source", {}), **tags},
    )
    now = int(time.time() * 1000)
    client.log_batch(
        child.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, _short(v)) for k, v in params.items()],
    )
    client.set_terminated(child.info.run_id, "FINISHED")


def _log_params(flat: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: _short(v) for k, v in flat.items()})


def _set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def _log_artifact(path: Path, artifact_path: str | None) -> None:
    import mlflow

    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def _log_dataset(ref: DatasetRef) -> None:
    import mlflow
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    tags = [InputTag(MLFLOW_DATASET_CONTEXT, ref.context)]
    mlflow.MlflowClient().log_inputs(_HELD["run_id"], [DatasetInput(dataset_entity(ref), tags)])


def _log_plot_images(plots_dir: Path, artifact_path: str) -> None:
    import mlflow

    from mlpipeline.track.plots import render_images

    with tempfile.TemporaryDirectory() as scratch:
        if render_images(plots_dir, Path(scratch), repo_root() / "dvc.yaml"):
            mlflow.log_artifacts(scratch, artifact_path)


def _close(status: str) -> str:
    """End the run (and the parent's, for now) with ``status``; the tracking URI."""
    import mlflow

    if "run_id" not in _HELD:
        return ""  # opening failed; that error is the one reported
    mlflow.end_run(status)
    parent_id = _HELD.get("parent_id")
    if parent_id and not _HELD.get("project_run"):
        end = int(time.time() * 1000)
        mlflow.MlflowClient().set_terminated(parent_id, status, end_time=end)
    _HELD.clear()
    return mlflow.get_tracking_uri()


def _experiment_id(client: Any, location: str | None) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in EXPERIMENT_KIND.items():  # stores made before it was set
            if key not in found.tags:
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception:  # created meanwhile by a concurrent stage
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _parent_run_id(client: Any, experiment_id: str, execution: str) -> str:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{EXECUTION_TAG}` = '{execution}' and tags.`{ROLE_TAG}` = 'pipeline'",
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    exp_name = os.environ.get("DVC_EXP_NAME")
    name = f"pipeline {exp_name}" if exp_name else f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}"
    parent = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            EXECUTION_TAG: execution,
            ROLE_TAG: "pipeline",
            "dvc.exp_name": exp_name or "",
            **git_state(repo_root()),
        },
    )
    return parent.info.run_id
