"""Typed, validated view of ``params.yaml``.

Every stage loads the whole file, so a misspelled key anywhere stops the first stage that
runs (``dvc exp run -S`` silently adds unknown keys). Each stage then reads only its keys.
The ``runtime`` section says how the pipeline runs (threads, processes, the Dask cluster):
it never changes a result, so no stage lists it as a DVC param.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlpipeline.core.errors import PipelineError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Task = Literal["regression", "binary", "multiclass"]


class PartitionWindow(_Section):
    """The partitions of one key to read: ``first`` to ``last``, both included (numbers compare
    as numbers, text as text: ISO dates sort as dates); either may be left open."""

    first: str | float | None = None
    last: str | float | None = None

    @field_validator("first", "last", mode="before")
    @classmethod
    def _a_date_as_iso_text(cls, value: Any) -> Any:
        """YAML reads an unquoted 2026-12-01 as a date: as text, it compares with the folders'."""
        return value.isoformat() if hasattr(value, "isoformat") else value


class DatasetParams(_Section):
    """What describes the data: where it is, what to predict, and how its columns are used.
    Every other section keeps working defaults; ``python -m mlpipeline init`` writes this one."""

    source: str = Field(
        description="'package://<package>/<path>' for a data file shipped in an installed "
        "package, or a local path / URL to a CSV or Parquet file."
    )
    format: Literal["auto", "csv", "parquet"] = "auto"
    read_options: dict[str, Any] = Field(default_factory=dict)
    target: str
    task: Task = "regression"
    categorical: list[str] = Field(default_factory=list)
    drop: dict[str, str] = Field(default_factory=dict)  # column -> why the model never sees it
    dates: list[str] = Field(default_factory=list)  # date columns, as numeric parts
    # a partitioned folder's window: key -> {first, last}; {} reads every partition
    partitions: dict[str, PartitionWindow] = Field(default_factory=dict)

    @field_validator("drop", mode="before")
    @classmethod
    def _a_list_is_fine(cls, value: Any) -> Any:
        return {str(c): "" for c in value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _each_column_has_one_role(self) -> DatasetParams:
        roles = {"categorical": self.categorical, "drop": list(self.drop), "dates": self.dates}
        for name, columns in roles.items():
            if self.target in columns:
                raise ValueError(f"the target '{self.target}' is also in dataset.{name}")
        seen: dict[str, str] = {}
        for name, columns in roles.items():
            for column in columns:
                if column in seen:
                    raise ValueError(
                        f"column '{column}' is in both dataset.{seen[column]} and "
                        f"dataset.{name}: give it one role"
                    )
                seen[column] = name
        return self


class IngestParams(_Section):
    """How ingest reads the source (from ``dataset``)."""

    source: str
    format: Literal["auto", "csv", "parquet"] = "auto"
    read_options: dict[str, Any] = Field(default_factory=dict)
    partitions: dict[str, PartitionWindow] = Field(default_factory=dict)


Fraction = Annotated[float, Field(ge=0, le=1)]


class SuiteBuildParams(_Section):
    """Thresholds of ``python -m mlpipeline build-suite``."""

    range_margin: Annotated[float, Field(ge=0)] = 0.5
    row_count_range: tuple[Fraction, Annotated[float, Field(ge=1)]] = (0.5, 2.0)
    bins: Annotated[int, Field(ge=2, le=100)] = 10
    kl_threshold: Annotated[float, Field(gt=0)] = 0.05
    tail_weight: Annotated[float, Field(gt=0, lt=1)] = 0.01
    max_categories: Annotated[int, Field(ge=1)] = 50
    positive: list[str] = Field(default_factory=list)
    positive_tolerance: Fraction = 0.001
    null_tolerance: Fraction = 0.05  # missing share allowed above the reference's own
    duplicate_tolerance: Fraction | None = None  # duplicates warn; a share past which they stop


class ValidateParams(_Section):
    suite: str
    features_suite: str
    result_examples: Annotated[int, Field(ge=0, le=100)] = 5
    build: SuiteBuildParams = Field(default_factory=SuiteBuildParams)


class FeaturizeParams(_Section):
    target: str  # target, categorical, drop and dates come from the dataset section
    categorical: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    drop_duplicates: bool = True
    row_filters: list[str] = Field(default_factory=list)
    derived: dict[str, str] = Field(default_factory=dict)
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.2
    stratify: bool = False  # keep the target's class proportions in both parts

    @model_validator(mode="after")
    def _derived_names_are_new(self) -> FeaturizeParams:
        clash = set(self.derived) & ({self.target} | set(self.categorical) | set(self.dates))
        if clash:
            raise ValueError(f"derived feature names clash with input columns: {sorted(clash)}")
        return self


class IntegerDim(_Section):
    type: Literal["integer"]
    low: int
    high: int
    prior: Literal["uniform", "log-uniform"] = "uniform"

    @model_validator(mode="after")
    def _ordered(self) -> IntegerDim:
        _check_bounds(self.low, self.high, self.prior)
        return self


class RealDim(_Section):
    type: Literal["real"]
    low: float
    high: float
    prior: Literal["uniform", "log-uniform"] = "uniform"

    @model_validator(mode="after")
    def _ordered(self) -> RealDim:
        _check_bounds(self.low, self.high, self.prior)
        return self


class CategoricalDim(_Section):
    type: Literal["categorical"]
    categories: Annotated[list[str | int | float | bool], Field(min_length=1)]


Dimension = Annotated[IntegerDim | RealDim | CategoricalDim, Field(discriminator="type")]


def _check_bounds(low: float, high: float, prior: str) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if prior == "log-uniform" and low <= 0:
        raise ValueError(f"a log-uniform prior needs low > 0, got {low}")


AUTO = "auto"

# LightGBM objectives and search metrics that fit each task; the first is the default ("auto").
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "regression": (
        "regression",
        "regression_l1",
        "huber",
        "fair",
        "poisson",
        "quantile",
        "mape",
        "gamma",
        "tweedie",
    ),
    "binary": ("binary", "cross_entropy"),
    "multiclass": ("multiclass", "multiclassova"),
}
SEARCH_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("rmse", "l2", "l1", "huber", "mape"),
    "binary": ("binary_logloss", "auc", "average_precision", "binary_error"),
    "multiclass": ("multi_logloss", "multi_error", "auc_mu"),
}
HIGHER_IS_BETTER = frozenset({"auc", "average_precision", "auc_mu"})


InitialDesign = Literal["random", "sobol", "halton", "hammersly", "lhs"]


class SearchParams(_Section):
    """The Bayesian search (``mlpipeline.model.search``). The optimizer's knobs default to the
    values ``python -m benchmarks.search`` found to beat random search
    (benchmarks/results_search.md; scikit-optimize's own defaults are random, gp_hedge,
    xi 0.01, kappa 1.96)."""

    n_calls: Annotated[int, Field(ge=1)]
    n_initial_points: Annotated[int, Field(ge=1)]
    initial_point_generator: InitialDesign = "sobol"  # how the initial points are drawn
    batch_size: Annotated[int, Field(ge=1)] = 2
    acq_func: Literal["gp_hedge", "EI", "PI", "LCB"] = "LCB"
    xi: Annotated[float, Field(ge=0)] = 0.01  # EI and PI: improvement sought, in the metric's units
    kappa: Annotated[float, Field(ge=0)] = 1.0  # LCB: mean - kappa x std (lower: exploit more)
    acq_optimizer: Literal["auto", "lbfgs", "sampling"] = "sampling"  # how the acquisition's
    # minimum is found: the best of 10,000 seeded random points (sampling: the same point on
    # every CPU), or L-BFGS from the best of them (lbfgs/auto: its end point moves in the last
    # digits with the CPU's floating-point kernels, and the search then walks elsewhere)
    noise: Literal["gaussian"] | Annotated[float, Field(gt=0)] = "gaussian"  # the GP's noise:
    # learned (gaussian) or a fixed variance (of the normalised scores)
    warm_start: str | None = None  # a git revision or DVC experiment whose trials seed the search
    cv_folds: Annotated[int, Field(ge=2)] = 3
    max_trial_rows: Annotated[int, Field(ge=100)] | None = 50_000  # the trials cross-validate
    # on a seeded sample of at most this many training rows (null: all); the winner is refit
    # on all of them, its rounds found by early stopping on a seeded tenth
    max_trial_rounds: Annotated[int, Field(ge=1)] | None = None  # trials on a sample stop at
    # this many boosting rounds (null: max_rounds), a first rung cheaper in rounds as well as
    # rows; the finalists on all rows still run to max_rounds. A way to search cheaper, off by
    # default: it ranks configurations by an early score (benchmarks/results_scale.md)
    finalists: Annotated[int, Field(ge=1)] = 3  # trials on a sample: this many of the best
    # are trained again on all training rows but that tenth; the best on it wins
    time_budget_s: Annotated[float, Field(gt=0)] | None = None  # no new trials after this many
    # seconds (null: off). Not reproducible: how many trials fit depends on the machine
    early_stopping_rounds: Annotated[int, Field(ge=1)] = 50
    max_rounds: Annotated[int, Field(ge=1)] = 1000
    metric: str = AUTO  # resolved per task by TrainParams; see SEARCH_METRICS
    space: dict[str, Dimension]


class SlicesParams(_Section):
    """The test metric by segment (``mlpipeline.model.slices``, ``reports/slices.json``)."""

    top_numeric: Annotated[int, Field(ge=0)] = 3  # numeric features cut into ranges: the
    # most important ones (gain); every categorical feature is sliced by its values
    bins: Annotated[int, Field(ge=2)] = 5  # quantile ranges per numeric feature; a number
    # with at most this many distinct values is sliced by its values
    min_rows: Annotated[int, Field(ge=1)] = 30  # fewer rows: the segment is marked small
    worst_rows: Annotated[int, Field(ge=0)] = 10  # the model card's worst test predictions


class TrainParams(_Section):
    task: Task = "regression"  # from dataset.task
    positive_class: str | int | bool | None = None  # binary: the class F1 and curves are of
    objective: str = AUTO
    target_transform: Literal["none", "log1p"] = "none"
    fixed: dict[str, str | int | float | bool] = Field(default_factory=dict)
    feature_sets: dict[str, Annotated[list[str], Field(min_length=1)]]
    search: SearchParams
    slices: SlicesParams = Field(default_factory=SlicesParams)

    @model_validator(mode="before")
    @classmethod
    def _resolve_auto(cls, data: Any) -> Any:
        """``auto`` objective and search metric become the task's defaults."""
        if not isinstance(data, dict):
            return data
        task = data.get("task", "regression")
        if task not in OBJECTIVES:
            return data  # the field validator reports it
        data = dict(data)
        if data.get("objective", AUTO) == AUTO:
            data["objective"] = OBJECTIVES[task][0]
        search = data.get("search")
        if isinstance(search, dict) and search.get("metric", AUTO) == AUTO:
            data["search"] = {**search, "metric": SEARCH_METRICS[task][0]}
        return data

    @model_validator(mode="after")
    def _fits_the_task(self) -> TrainParams:
        task = self.task
        if self.objective not in OBJECTIVES[task]:
            raise ValueError(
                f"objective '{self.objective}' does not fit task '{task}' "
                f"(use one of {list(OBJECTIVES[task])}, or auto)"
            )
        if self.search.metric not in SEARCH_METRICS[task]:
            raise ValueError(
                f"search.metric '{self.search.metric}' does not fit task '{task}' "
                f"(use one of {list(SEARCH_METRICS[task])}, or auto)"
            )
        if self.positive_class is not None and task != "binary":
            raise ValueError(f"positive_class applies to a binary task, not to '{task}'")
        if task != "regression" and self.target_transform != "none":
            raise ValueError(f"target_transform must be 'none' for a {task} task")
        return self

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @model_validator(mode="after")
    def _feature_set_dimension_is_known(self) -> TrainParams:
        dim = self.search.space.get("feature_set")
        names = dim.categories if isinstance(dim, CategoricalDim) else []
        if dim is not None and not isinstance(dim, CategoricalDim):
            raise ValueError("search.space.feature_set must be a categorical dimension")
        unknown = [n for n in names if n not in self.feature_sets]
        if unknown:
            raise ValueError(f"search.space.feature_set names unknown feature sets: {unknown}")
        if dim is None and len(self.feature_sets) != 1:
            raise ValueError(
                "with several feature_sets, add a categorical search.space.feature_set dimension"
            )
        return self


# Test-set metrics of each kind of task (reports/metrics.json), and which are better higher.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("rmse", "mae", "r2", "mape"),
    "classification": ("log_loss", "roc_auc", "accuracy", "f1"),
}
QUALITY_HIGHER_IS_BETTER = frozenset({"r2", "roc_auc", "accuracy", "f1"})


class SliceGate(_Section):
    """``package.gate.slices``: no test segment of at least ``min_rows`` rows may score worse
    than ``max_ratio`` × the whole test part (``reports/slices.json``)."""

    min_rows: Annotated[int, Field(ge=1)] = 100
    max_ratio: Annotated[float, Field(gt=1)]


class GateParams(_Section):
    """When a new model version replaces the champion (see ``mlpipeline.track.registry``)."""

    metric: str = AUTO  # auto: rmse (regression) or log_loss (classification)
    margin: Annotated[float, Field(ge=0)] = 0.0  # relative improvement the challenger needs
    thresholds: dict[str, float] = Field(default_factory=dict)  # metric: bound every champion meets
    # the champion was trained on another train/test split, so its score on the new held-out
    # rows is not comparable: promote the new version (if it meets the thresholds) or keep it
    on_lineage_change: Literal["promote", "keep"] = "promote"
    slices: SliceGate | None = None  # off by default


Unseen = Literal["reject", "missing"]


class PackageParams(_Section):
    model_name: str
    input_example_rows: Annotated[int, Field(ge=1, le=100)] = 5
    max_batch_rows: Annotated[int, Field(ge=1)] = 100_000
    # reject (400, naming the value) | missing (scored as LightGBM scores an unseen category),
    # for every categorical column, or per column ({column: reject|missing}; others reject)
    unseen_categories: Unseen | dict[str, Unseen] = "reject"

    def open_ended(self, categorical: list[str]) -> list[str]:
        """The ``categorical`` columns whose new values are scored (not refused)."""
        unseen = self.unseen_categories
        if isinstance(unseen, str):
            return list(categorical) if unseen == "missing" else []
        return [c for c in categorical if unseen.get(c) == "missing"]

    gate: GateParams = Field(default_factory=GateParams)
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)


class DriftParams(_Section):
    """The drift rule (``mlpipeline.quality.drift``): a test for small batches, a distance for
    large."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05  # false-alarm rate of a whole batch
    test_max_rows: Annotated[int, Field(ge=1)] = 1000  # batches up to this size are tested
    wasserstein: Annotated[float, Field(gt=0)] = 0.1  # numbers: in reference standard deviations
    linf: Annotated[float, Field(gt=0, le=1)] = 0.1  # categories: the largest change of a share


class MonitorParams(_Section):
    """``python -m mlpipeline monitor``: a new batch against what the model was trained on."""

    raw: str = "data/raw/data.parquet"  # the reference: its rows of the training part
    features_dir: str = "data/features"
    predictions: str = "reports/plots/predictions.csv"  # the test set's: reference predictions
    model: str = "models/pyfunc"
    out_dir: str = "reports/monitor"
    drift: DriftParams = Field(default_factory=DriftParams)


class RolloutReportParams(_Section):
    """``python -m mlpipeline rollout-report``: when the challenger is promoted or rolled back."""

    out_dir: str = "reports/rollout"
    bins: Annotated[int, Field(ge=2, le=100)] = 10  # quantile bins of the predictions' PSI
    min_rows: Annotated[int, Field(ge=1)] = 500  # logged rows before anything but keep watching
    min_outcomes: Annotated[int, Field(ge=1)] = 200  # rows with an outcome to judge on metrics
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95  # of the bootstrap intervals
    bootstrap: Annotated[int, Field(ge=100)] = 1000  # resamples (seeded: the same log, same CI)
    margin: Annotated[float, Field(ge=0)] = 0.0  # relative improvement the challenger needs
    agreement_tolerance: Annotated[float, Field(ge=0)] = 0.05  # regression: |diff| <= 5% agrees
    max_prediction_psi: Annotated[float, Field(gt=0)] = 0.25  # no outcomes: beyond it, roll back
    max_error_rate: Fraction = 0.01  # share of rows the challenger could not score


class RolloutParams(_Section):
    """The challenger served beside the champion (``python -m mlpipeline rollout build``)."""

    mode: Literal["off", "shadow", "canary"] = "off"
    canary_share: Fraction = 0.1  # canary: share of request keys the challenger answers
    key_column: str = "request_id"  # request column keying each row (absent: the row's hash)
    log_dir: str = "logs/predictions"  # the prediction log; "" = none
    log_inputs: Literal["row", "hash"] = "row"  # input values (live drift), or their SHA-256
    rotate_bytes: Annotated[int, Field(ge=4096)] = 16_777_216  # a log file's size, at most
    report: RolloutReportParams = Field(default_factory=RolloutReportParams)

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare off as false


class AnalysisParams(_Section):
    """``python -m mlpipeline analyze`` (no stage depends on it): the winner and this many
    runners-up are cross-validated again under ``robustness_seeds`` other seeds (each moves the
    folds and LightGBM's seed: seed + 1, seed + 2, ...)."""

    robustness_seeds: Annotated[int, Field(ge=0)] = 5
    runners_up: Annotated[int, Field(ge=0)] = 2
    out_dir: str = "reports/analysis"  # git-ignored: it depends on this machine's MLflow store


class DaskParams(_Section):
    """Where ``engine: dask`` runs: an existing cluster, or a ``LocalCluster`` on this machine."""

    scheduler_address: str | None = None  # e.g. tcp://10.0.0.5:8786; DASK_SCHEDULER_ADDRESS wins
    n_workers: Annotated[int, Field(ge=0)] = 0  # LocalCluster worker processes; 0 = one per core
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    memory_limit: str = "auto"  # per LocalCluster worker, e.g. 2GiB; auto = machine / workers
    blocksize: str = "64MiB"  # partition size when reading the source (bytes of CSV or Parquet)


class RuntimeParams(_Section):
    """How the pipeline runs on this machine. Results do not depend on it (LightGBM's trees do
    not depend on its thread count; the search's points depend on its batch size, not on how
    many processes evaluate them), so it is no DVC param of any stage."""

    num_threads: Annotated[int, Field(ge=0)] = 0  # LightGBM threads in all; 0 = one per core
    search_jobs: Annotated[int, Field(ge=0)] = 0  # trials at once (processes); 0 = per core
    dask: DaskParams = Field(default_factory=DaskParams)


# keys of the dataset section that the typed sections the code receives carry too
FROM_DATASET = {
    "ingest": ("source", "format", "read_options", "partitions"),
    "featurize": ("target", "categorical", "drop", "dates"),
    "train": ("task",),
}


class Params(_Section):
    """The whole file. ``dataset`` is what describes the data; its keys are also given to the
    sections whose code needs them (``FROM_DATASET``: ``featurize.target``, ``train.task``,
    ...), so each function receives one typed section — but in the file they are written once,
    under ``dataset``."""

    seed: int
    engine: Literal["pandas", "dask"] = "pandas"
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    dataset: DatasetParams
    ingest: IngestParams
    validate_: ValidateParams = Field(alias="validate")
    featurize: FeaturizeParams
    train: TrainParams
    package: PackageParams
    monitor: MonitorParams = Field(default_factory=MonitorParams)
    rollout: RolloutParams = Field(default_factory=RolloutParams)
    analysis: AnalysisParams = Field(default_factory=AnalysisParams)

    @model_validator(mode="before")
    @classmethod
    def _share_the_dataset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("dataset"), dict):
            return data
        data, dataset = dict(data), data["dataset"]
        for section, keys in FROM_DATASET.items():
            given = dict(data.get(section) or {})
            moved = [k for k in keys if k in given]
            if moved:
                raise ValueError(
                    f"{', '.join(f'{section}.{k}' for k in moved)}: set "
                    f"{', '.join(f'dataset.{k}' for k in moved)} instead"
                )
            values = {k: dataset[k] for k in keys if k in dataset}
            if isinstance(values.get("drop"), dict):
                values["drop"] = list(values["drop"])
            data[section] = {**given, **values}
        return data

    @model_validator(mode="after")
    def _gate_metrics_fit_the_task(self) -> Params:
        known = task_metrics(self.train.task)
        gate = self.package.gate
        named = ([gate.metric] if gate.metric != AUTO else []) + list(gate.thresholds)
        unknown = [m for m in named if m not in known]
        if unknown:
            raise ValueError(
                f"package.gate names metric(s) {unknown} that a {self.train.task} task does not "
                f"report (use {list(known)})"
            )
        return self

    @model_validator(mode="after")
    def _dask_split_is_not_stratified(self) -> Params:
        if self.engine == "dask" and self.featurize.stratify:
            raise ValueError(
                "featurize.stratify: true needs engine: pandas (with engine: dask each row's "
                "part follows a seeded hash of its content, which keeps class proportions only "
                "up to sampling noise)"
            )
        return self

    @property
    def gate_metric(self) -> str:
        metric = self.package.gate.metric
        return task_metrics(self.train.task)[0] if metric == AUTO else metric


def task_metrics(task: str) -> tuple[str, ...]:
    return TASK_METRICS["regression" if task == "regression" else "classification"]


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate the params file; raise ``PipelineError`` naming any bad key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PipelineError(f"cannot read params file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        raise PipelineError(f"{path} is invalid:\n" + describe_errors(exc)) from exc


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, naming the key path and section in params terms."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-after", "tagged"))]
        if len(loc) > 1 and loc[1] in FROM_DATASET.get(loc[0], ()):
            continue  # a copy of a dataset key: its error is reported under dataset
        key = ".".join(loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            section = ".".join(loc[:-1]) or "top level"
            lines.append(f"  - unknown key '{loc[-1]}' in section '{section}' ({key})")
        elif err["type"] == "missing":
            lines.append(f"  - missing key '{key}'")
        else:
            lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts/models into dotted keys (for MLflow params)."""
    if isinstance(tree, BaseModel):
        tree = tree.model_dump(by_alias=True)
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
