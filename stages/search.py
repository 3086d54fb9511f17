"""The hyperparameter and feature-set search: scikit-optimize ask/tell around LightGBM CV.

Each step asks the optimizer for ``batch_size`` points (a hyperparameter set together with a
feature set), evaluates them — in ``n_jobs`` worker processes, with LightGBM's threads split so
that workers x threads never exceed the cores — and tells it the CV scores in trial order. The
points depend on the seed and the batch size only, and LightGBM's trees do not depend on its
thread count, so the result is the same whatever ``n_jobs`` is. Scores are losses: a metric
where higher is better (AUC) is negated. Classification uses stratified folds.

Every finished trial is appended to a checkpoint (JSON lines, keyed by a hash of the search
params and the data). A run killed part-way and started again with the same params replays
the finished trials instead of retraining them, and ends exactly where an uninterrupted run
would. The checkpoint is removed when the search completes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.errors import StageError
from stages.params import HIGHER_IS_BETTER, CategoricalDim, IntegerDim, SearchParams, TrainParams

log = logging.getLogger(__name__)

FEATURE_SET = "feature_set"


@dataclass(frozen=True)
class Trial:
    """One evaluated point of the search."""

    number: int
    point: dict[str, Any]
    score: float
    score_std: float
    best_iteration: int
    seconds: float
    reused: bool = False


@dataclass
class BestModels:
    """The fold models of the best trial so far, as LightGBM model strings, kept as trials
    finish so the out-of-fold scores need no second cross-validation of the best point.

    A trial's worker returns its models only when it beats ``score`` (few trials do); a best
    trial replayed from a checkpoint or run on a cluster has none (``models`` is None)."""

    number: int = -1
    score: float = float("inf")
    models: list[str] | None = None

    def offer(self, trial: Trial, models: list[str] | None) -> None:
        if (trial.score, trial.number) < (self.score, self.number):
            self.number, self.score, self.models = trial.number, trial.score, models

    def boosters(self, best: Trial) -> list[Any] | None:
        """The best trial's fold boosters, if they were kept."""
        if self.models is None or self.number != best.number:
            return None
        import lightgbm as lgb

        return [lgb.Booster(model_str=text) for text in self.models]


# ---- configuration -> library objects ------------------------------------------------------


def cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_count(requested: int) -> int:
    """LightGBM threads: as requested, or one per usable core (its own default oversubscribes)."""
    return requested or cores()


def worker_plan(search: SearchParams, total_threads: int) -> tuple[int, int]:
    """(processes, LightGBM threads per process): never more than ``total_threads`` in all."""
    jobs = search.n_jobs or min(search.batch_size, total_threads)
    jobs = max(1, min(jobs, search.batch_size, total_threads))
    return jobs, max(1, total_threads // jobs)


def skopt_space(search: SearchParams) -> list:
    """scikit-optimize dimensions from the typed search space, in params order."""
    from skopt.space import Categorical, Integer, Real

    dims = []
    for name, dim in search.space.items():
        if isinstance(dim, CategoricalDim):
            dims.append(Categorical(dim.categories, name=name))
        elif isinstance(dim, IntegerDim):
            dims.append(Integer(dim.low, dim.high, prior=dim.prior, name=name))
        else:
            dims.append(Real(dim.low, dim.high, prior=dim.prior, name=name))
    return dims


def lgb_params(
    point: dict[str, Any], train: TrainParams, seed: int, threads: int, num_class: int = 1
) -> dict:
    """LightGBM parameters for one point of the search space (feature set excluded)."""
    hyper = {k: v for k, v in point.items() if k != FEATURE_SET}
    classes = {"num_class": num_class} if train.task == "multiclass" else {}
    return {
        "objective": train.objective,
        "metric": train.search.metric,
        **classes,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
        "feature_pre_filter": False,
        **train.fixed,
        **hyper,
    }


def feature_set_name(train: TrainParams, point: dict[str, Any]) -> str:
    """The point's feature set, or the only one when the space has no ``feature_set``."""
    return point.get(FEATURE_SET) or next(iter(train.feature_sets))


def feature_columns(
    train: TrainParams, point: dict[str, Any], available: pd.Index | list[str]
) -> list[str]:
    """The columns of the point's feature set; an unknown column raises ``StageError``."""
    name = feature_set_name(train, point)
    columns = train.feature_sets[name]
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise StageError(
            f"train.feature_sets.{name} names columns the features do not have: {unknown} "
            f"(available: {list(available)})"
        )
    return columns


def _stable(value: float) -> float:
    """Ten significant digits. LightGBM's metric sums run in parallel, so their last bits
    depend on the thread count; the trees do not. Rounding keeps the search's decisions, and
    so its result, independent of ``n_jobs``."""
    return float(f"{float(value):.10g}")


def loss(metric: str, value: float) -> float:
    """The search minimises: metrics where higher is better (AUC) are negated."""
    return -value if metric in HIGHER_IS_BETTER else value


def to_native(value: Any) -> Any:
    """numpy scalars (as skopt returns them) to plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


# ---- cross-validation ----------------------------------------------------------------------


class CrossValidator:
    """Cross-validates points on fixed folds, building each feature set's Dataset once."""

    def __init__(
        self, frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, threads: int
    ) -> None:
        from sklearn.model_selection import KFold, StratifiedKFold

        self.frame, self.y, self.train, self.seed, self.threads = frame, y, train, seed, threads
        self.num_class = int(y.max()) + 1 if train.is_classification and len(y) else 1
        splitter = StratifiedKFold if train.is_classification else KFold
        folds = splitter(train.search.cv_folds, shuffle=True, random_state=seed)
        self.folds = list(folds.split(frame, y))
        self._datasets: dict[tuple[str, ...], Any] = {}

    def dataset(self, columns: list[str]) -> Any:
        import lightgbm as lgb

        key = tuple(columns)
        if key not in self._datasets:
            self._datasets[key] = lgb.Dataset(
                self.frame[columns],
                label=self.y,
                free_raw_data=False,
                params={"feature_pre_filter": False, "verbosity": -1, "num_threads": self.threads},
            )
        return self._datasets[key]

    def evaluate(self, point: dict[str, Any]) -> tuple[float, float, int, Any]:
        """CV mean and std of the metric, the best iteration, and the fold boosters."""
        import lightgbm as lgb

        search = self.train.search
        columns = feature_columns(self.train, point, self.frame.columns)
        result = lgb.cv(
            lgb_params(point, self.train, self.seed, self.threads, self.num_class),
            self.dataset(columns),
            num_boost_round=search.max_rounds,
            folds=self.folds,
            callbacks=[lgb.early_stopping(search.early_stopping_rounds, verbose=False)],
            return_cvbooster=True,
        )
        mean = result[f"valid {search.metric}-mean"]
        std = result[f"valid {search.metric}-stdv"]
        score = loss(search.metric, _stable(mean[-1]))
        return score, _stable(std[-1]), len(mean), result["cvbooster"]

    def trial(self, number: int, point: dict[str, Any]) -> Trial:
        return self.kept_trial(number, point, keep_below=float("-inf"))[0]

    def kept_trial(
        self, number: int, point: dict[str, Any], keep_below: float
    ) -> tuple[Trial, list[str] | None]:
        """The trial, and its fold models (model strings, up to the best iteration) if it
        scores below ``keep_below``."""
        start = time.perf_counter()
        score, std, best_iteration, cvbooster = self.evaluate(point)
        trial = Trial(number, point, score, std, best_iteration, time.perf_counter() - start)
        if score >= keep_below:
            return trial, None
        return trial, [b.model_to_string(num_iteration=best_iteration) for b in cvbooster.boosters]

    def out_of_fold(
        self, point: dict[str, Any], boosters: list[Any], best_iteration: int
    ) -> np.ndarray:
        """Predictions for every training row from the fold model that did not see it
        (class probabilities, one column per class, for a multiclass task)."""
        columns = feature_columns(self.train, point, self.frame.columns)
        rows = len(self.frame)
        shape = (rows, self.num_class) if self.train.task == "multiclass" else rows
        predictions = np.empty(shape)
        for (_, held_out), booster in zip(self.folds, boosters, strict=True):
            predictions[held_out] = booster.predict(
                self.frame.iloc[held_out][columns],
                num_iteration=best_iteration,
                num_threads=self.threads,
            )
        return predictions


# ---- worker processes ----------------------------------------------------------------------

_WORKER: CrossValidator | None = None

# evaluates a batch of (number, point): each trial, with its fold models if below the loss given
Evaluate = Callable[[list[tuple[int, dict]], float], list[tuple[Trial, list[str] | None]]]


def _start_worker(frame: pd.DataFrame, y: np.ndarray, train_json: str, seed: int, threads: int):
    global _WORKER  # one validator per worker process, built once
    _WORKER = CrossValidator(frame, y, TrainParams.model_validate_json(train_json), seed, threads)


def _run_trial(
    number: int, point: dict[str, Any], keep_below: float
) -> tuple[Trial, list[str] | None]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.kept_trial(number, point, keep_below)


@contextmanager
def trial_runner(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, jobs: int, threads: int
) -> Iterator[Evaluate]:
    """A function that evaluates a batch of (number, point), in-process or in ``jobs`` workers,
    returning each trial with its fold models if it scores below the given loss."""
    if jobs == 1:
        cv = CrossValidator(frame, y, train, seed, threads)
        yield lambda batch, keep_below: [cv.kept_trial(n, p, keep_below) for n, p in batch]
        return
    # spawn, not fork: forking a process that already runs OpenMP threads can hang
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(frame, y, train.model_dump_json(), seed, threads),
    ) as pool:
        for _ in range(jobs):  # start the workers now: they load the data meanwhile
            pool.submit(int)
        yield lambda batch, keep_below: list(
            pool.map(_run_trial, *zip(*batch, strict=True), [keep_below] * len(batch))
        )


# ---- cluster tasks (engine: dask) ----------------------------------------------------------

# Each Dask worker builds one validator per search (its features loaded once, by ``loader``).
_CLUSTER_VALIDATORS: dict[str, CrossValidator] = {}


def _cluster_validator(
    loader: Callable[[], tuple[pd.DataFrame, np.ndarray]], train_json: str, seed: int, threads: int
) -> CrossValidator:
    # the loader's arguments name the data and its digest: a long-lived cluster's workers
    # never reuse features that have changed since
    key = f"{loader!r}|{train_json}|{seed}|{threads}"
    if key not in _CLUSTER_VALIDATORS:
        _CLUSTER_VALIDATORS.clear()  # one search's data at a time
        frame, y = loader()
        train = TrainParams.model_validate_json(train_json)
        _CLUSTER_VALIDATORS[key] = CrossValidator(frame, y, train, seed, threads)
    return _CLUSTER_VALIDATORS[key]


def _forget_validators() -> None:
    _CLUSTER_VALIDATORS.clear()


def _cluster_trial(loader, train_json: str, seed: int, threads: int, number: int, point: dict):
    return _cluster_validator(loader, train_json, seed, threads).trial(number, point)


def _cluster_out_of_fold(loader, train_json: str, seed: int, threads: int, best: Trial):
    cv = _cluster_validator(loader, train_json, seed, threads)
    _, _, _, boosters = cv.evaluate(best.point)  # deterministic: the best trial again
    return cv.out_of_fold(best.point, boosters.boosters, best.best_iteration)


class ClusterTrials:
    """Trials as tasks on a Dask cluster: each worker loads the training features itself
    (``loader`` runs on the worker) and keeps them for the whole search."""

    def __init__(self, client: Any, loader: Callable, train: TrainParams, seed: int) -> None:
        self.client, self.loader, self.seed = client, loader, seed
        self.train_json = train.model_dump_json()
        workers = client.scheduler_info()["workers"].values()
        self.threads = min(w["nthreads"] for w in workers)
        self.slots = sum(w["nthreads"] for w in workers) // self.threads

    @contextmanager
    def runner(self) -> Iterator[Callable]:
        args = (self.loader, self.train_json, self.seed, self.threads)

        def evaluate(batch: list[tuple[int, dict]], keep_below: float) -> list[tuple[Trial, None]]:
            del keep_below  # models stay on the workers; out_of_fold recomputes them there
            futures = [
                self.client.submit(_cluster_trial, *args, n, p, pure=False) for n, p in batch
            ]
            return [(trial, None) for trial in self.client.gather(futures)]

        yield evaluate

    def out_of_fold(self, best: Trial) -> np.ndarray:
        args = (self.loader, self.train_json, self.seed, self.threads)
        return self.client.submit(_cluster_out_of_fold, *args, best, pure=False).result()

    def release(self) -> None:
        """Free the features the workers hold (a shared cluster outlives the stage)."""
        self.client.run(_forget_validators)


# ---- checkpoint ----------------------------------------------------------------------------


def checkpoint_key(train: TrainParams, seed: int, data_digest: str) -> str:
    """Changes whenever anything that shapes the search changes (not ``n_jobs``)."""
    shape = train.model_dump(mode="json")
    shape["search"].pop("n_jobs", None)
    text = json.dumps({"train": shape, "seed": seed, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoint:
    """Finished trials, one JSON line each, appended and flushed as they finish."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.trials: dict[int, Trial] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    trial = Trial(**json.loads(line))
                except (ValueError, TypeError):
                    break  # a line cut short by a kill: ignore it and what follows
                self.trials[trial.number] = trial

    def finished(self, number: int, point: dict[str, Any]) -> Trial | None:
        """The stored trial ``number`` if it evaluated the same point."""
        trial = self.trials.get(number)
        if trial is None or json.dumps(trial.point, sort_keys=True) != json.dumps(
            point, sort_keys=True
        ):
            return None
        return Trial(**{**asdict(trial), "point": point, "reused": True})  # asked key order

    def add(self, trial: Trial) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(asdict(trial), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


# ---- the loop ------------------------------------------------------------------------------


def run_search(
    frame: pd.DataFrame,
    y: np.ndarray,
    train: TrainParams,
    seed: int,
    total_threads: int,
    checkpoint: Checkpoint | None = None,
    on_trial: Callable[[Trial], None] = lambda trial: None,
    cluster: ClusterTrials | None = None,
    kept: BestModels | None = None,
) -> list[Trial]:
    """Ask/tell until ``n_calls`` trials are done; returns them in order. Trials run in this
    process, in worker processes, or as tasks on a Dask cluster (``cluster``). ``kept``
    receives the best trial's fold models."""
    search = train.search
    checkpoint = checkpoint or Checkpoint(None)
    if cluster is None:
        jobs, threads = worker_plan(search, total_threads)
        runner = trial_runner(frame, y, train, seed, jobs, threads)
    else:
        jobs, threads = cluster.slots, cluster.threads
        runner = cluster.runner()
    log.info("search: %d calls, %d worker(s) x %d thread(s)", search.n_calls, jobs, threads)
    trials: list[Trial] = []
    kept = kept if kept is not None else BestModels()
    # the workers start first: scikit-optimize's import overlaps theirs
    with runner as evaluate, _progress(search.n_calls) as progress:
        dims = skopt_space(search)
        optimizer = bayesian_optimizer(dims, search, seed)
        while len(trials) < search.n_calls:
            size = min(search.batch_size, search.n_calls - len(trials))
            xs = [portable_point(dims, x) for x in ask_batch(optimizer, size)]
            batch = [
                (len(trials) + i, {d.name: to_native(v) for d, v in zip(dims, x, strict=True)})
                for i, x in enumerate(xs)
            ]
            done = {n: t for n, p in batch if (t := checkpoint.finished(n, p))}
            todo = [(n, p) for n, p in batch if n not in done]
            for trial in done.values():
                kept.offer(trial, None)
            for trial, models in evaluate(todo, kept.score) if todo else []:
                checkpoint.add(trial)
                kept.offer(trial, models)
                done[trial.number] = trial
            for number, _ in batch:
                trial = done[number]
                trials.append(trial)
                on_trial(trial)
                progress(trial, min(t.score for t in trials))
            optimizer.tell(xs, [done[n].score for n, _ in batch])
    return trials


def bayesian_optimizer(dims: list, search: SearchParams, seed: int) -> Any:
    """scikit-optimize's ask/tell ``Optimizer`` with a Gaussian process over ``dims``."""
    from skopt import Optimizer

    return Optimizer(
        dims,
        base_estimator="GP",
        n_initial_points=min(search.n_initial_points, search.n_calls),
        acq_func=search.acq_func,
        random_state=seed,
    )


def ask_batch(optimizer: Any, size: int) -> list[list]:
    """``optimizer.ask(n_points=size)`` (constant liar, lie = the lowest loss so far), without
    its last lie: scikit-optimize tells the copy a made-up result for the last point too, a
    Gaussian-process fit that nothing uses. Same points, same random state afterwards."""
    if size == 1:
        return [optimizer.ask()]
    liar = optimizer.copy(random_state=optimizer.rng.randint(0, np.iinfo(np.int32).max))
    points = []
    for _ in range(size - 1):
        points.append(liar.ask())
        liar._tell(points[-1], np.min(liar.yi) if liar.yi else 0.0)  # as ask(n_points) does
    return [*points, liar.ask()]


POINT_DIGITS = 6  # significant digits of a real-valued hyperparameter (as search.csv shows it)


def portable_point(dims: list, x: list) -> list:
    """The optimizer's point with real values rounded to ``POINT_DIGITS`` significant digits
    (within bounds). Its proposals come out of NumPy, SciPy and BLAS code that each CPU runs
    with other SIMD instructions, so they differ between machines in the last bits; rounded,
    every machine evaluates (and tells the optimizer) the same point."""
    from skopt.space import Real

    return [
        min(max(float(f"{v:.{POINT_DIGITS}g}"), d.low), d.high) if isinstance(d, Real) else v
        for d, v in zip(dims, x, strict=True)
    ]


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Trial, float], None]]:
    """A progress bar on stderr: trials done, best score, elapsed time and ETA."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="search", unit="trial", file=sys.stderr, dynamic_ncols=True)

    def update(trial: Trial, best: float) -> None:
        bar.set_postfix(best=f"{best:.5f}", last=f"{trial.score:.5f}", refresh=False)
        bar.update(1)

    try:
        yield update
    finally:
        bar.close()


def best_trial(trials: list[Trial]) -> Trial:
    return min(trials, key=lambda t: (t.score, t.number))


def history_frame(trials: list[Trial]) -> pd.DataFrame:
    """One row per trial, with the running best: the data of the convergence plot."""
    rows = [
        {
            "trial": t.number,
            "score": t.score,
            "score_std": t.score_std,
            "best_iteration": t.best_iteration,
            **t.point,
        }
        for t in trials
    ]
    frame = pd.DataFrame(rows)
    frame.insert(2, "best_score", frame["score"].cummin())
    return frame
