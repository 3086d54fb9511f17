"""The hyperparameter and feature-set search: scikit-optimize ask/tell around LightGBM CV.

Each step asks the optimizer for ``batch_size`` points (a hyperparameter set together with a
feature set), evaluates them — in ``runtime.search_jobs`` worker processes, with LightGBM's
threads split so that workers x threads never exceed the cores, or as tasks on a Dask
cluster (``mlpipeline.dask``) — and tells it the CV scores in trial order. The points depend
on the seed and the batch size only, and LightGBM's trees do not depend on its thread count,
so the result is the same however the trials run. Scores are losses: a metric
where higher is better (AUC) is negated. Classification uses stratified folds.

Every finished trial is appended to a checkpoint (JSON lines, keyed by a hash of the search
params, the data and the warm start). A run killed part-way and started again with the same
params replays the finished trials instead of retraining them, and ends exactly where an
uninterrupted run would. The checkpoint is removed when the search completes.

A warm start (``WarmStart``, read by ``mlpipeline.model.warmstart``) is an earlier search's trials,
told to the optimizer before it asks for the first point: they count towards its initial
points, so the Gaussian process proposes from the start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import CategoricalDim, IntegerDim, SearchParams, TrainParams
from mlpipeline.model.boosting import CrossValidator, cap_threads

log = logging.getLogger(__name__)


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
    """The fold models of the ``count`` best trials so far, as LightGBM model strings, kept as
    trials finish so the out-of-fold scores need no second cross-validation of the winner:
    the search's best, or one of the ``count`` finalists (``train.search.finalists``).

    A trial's worker returns its models only when it scores below ``score`` (few trials do);
    a trial replayed from a checkpoint or run on a cluster has none (``models`` is None)."""

    count: int = 1
    held: dict[int, tuple[float, list[str] | None]] = field(default_factory=dict)

    def _ranked(self) -> list[int]:
        """The held trials' numbers, best first (ties: the earlier)."""
        return sorted(self.held, key=lambda number: (self.held[number][0], number))

    @property
    def number(self) -> int:
        """The best trial's number (-1: none yet)."""
        ranked = self._ranked()
        return ranked[0] if ranked else -1

    @property
    def score(self) -> float:
        """What a new trial must score below for its models to be kept."""
        if len(self.held) < self.count:
            return float("inf")
        return self.held[self._ranked()[-1]][0]

    def offer(self, trial: Trial, models: list[str] | None) -> None:
        self.held[trial.number] = (trial.score, models)
        if len(self.held) > self.count:
            del self.held[self._ranked()[-1]]

    def boosters(self, trial: Trial) -> list[Any] | None:
        """The trial's fold boosters, if they were kept."""
        models = self.held.get(trial.number, (0.0, None))[1]
        if models is None:
            return None
        import lightgbm as lgb

        return [lgb.Booster(model_str=text) for text in models]


# ---- configuration -> library objects ------------------------------------------------------


def worker_plan(batch_size: int, requested_jobs: int, total_threads: int) -> tuple[int, int]:
    """(processes, LightGBM threads per process): at most one process per point of a batch,
    never more than ``total_threads`` threads in all (``requested_jobs`` 0: as many as fit)."""
    jobs = requested_jobs or min(batch_size, total_threads)
    jobs = max(1, min(jobs, batch_size, total_threads))
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


def to_native(value: Any) -> Any:
    """numpy scalars (as skopt returns them) to plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


# ---- trials ------------------------------------------------------------------------------

# evaluates a batch of (number, point): each trial, with its fold models if below the loss given
Evaluate = Callable[[list[tuple[int, dict]], float], list[tuple[Trial, list[str] | None]]]


def kept_trial(
    cv: CrossValidator, number: int, point: dict[str, Any], keep_below: float
) -> tuple[Trial, list[str] | None]:
    """The trial, and its fold models (model strings, up to the best iteration) if it scores
    below ``keep_below``."""
    start = time.perf_counter()
    score, std, best_iteration, cvbooster = cv.evaluate(point)
    trial = Trial(number, point, score, std, best_iteration, time.perf_counter() - start)
    if score >= keep_below:
        return trial, None
    return trial, [b.model_to_string(num_iteration=best_iteration) for b in cvbooster.boosters]


@dataclass(frozen=True)
class CoreShare:
    """The cores the search's worker processes share. ``busy`` (a shared counter) holds the
    trials of the current batch not yet finished; each running trial may use
    ``total // busy`` LightGBM threads, re-read after every boosting round. So while both
    trials of a batch run each has one core, and the one still running when the other ends
    takes both: no core waits for the batch's slower trial. The trees do not depend on the
    thread count (``mlpipeline.model.boosting``), so neither does the result."""

    busy: Any  # multiprocessing.Value("i")
    total: int
    jobs: int

    def limit(self) -> int:
        running = max(1, min(self.busy.value, self.jobs))
        return max(1, self.total // running)

    def finished(self) -> None:
        with self.busy.get_lock():
            self.busy.value -= 1


_WORKER: CrossValidator | None = None
_SHARE: list[Any] = [None, 0]  # the worker's CoreShare and the thread cap it last set


def _start_worker(frame: pd.DataFrame, y: np.ndarray, train_json: str, seed: int, share: CoreShare):
    global _WORKER  # one validator per worker process, built once
    train = TrainParams.model_validate_json(train_json)
    _WORKER = CrossValidator(frame, y, train, seed, share.total)
    _WORKER.callbacks = [_follow_share]
    _SHARE[0] = share


def _follow_share(env: Any = None) -> None:
    """Cap this worker's LightGBM threads at its share of the cores (a LightGBM callback)."""
    limit = _SHARE[0].limit()
    if limit != _SHARE[1]:
        cap_threads(limit)
        _SHARE[1] = limit


def _run_trial(
    number: int, point: dict[str, Any], keep_below: float
) -> tuple[Trial, list[str] | None]:
    assert _WORKER is not None, "worker not initialised"
    _follow_share()
    try:
        return kept_trial(_WORKER, number, point, keep_below)
    finally:
        _SHARE[0].finished()


@contextmanager
def trial_runner(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, jobs: int, threads: int
) -> Iterator[Evaluate]:
    """A function that evaluates a batch of (number, point), in-process or in ``jobs`` workers
    sharing ``jobs x threads`` LightGBM threads (``CoreShare``), returning each trial with its
    fold models if it scores below the given loss."""
    log.info("search: %d worker(s) x %d thread(s)", jobs, threads)
    if jobs == 1:
        cv = CrossValidator(frame, y, train, seed, threads)
        yield lambda batch, keep_below: [kept_trial(cv, n, p, keep_below) for n, p in batch]
        return
    # spawn, not fork: forking a process that already runs OpenMP threads can hang
    context = get_context("spawn")
    share = CoreShare(context.Value("i", 0), jobs * threads, jobs)
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(frame, y, train.model_dump_json(), seed, share),
    ) as pool:
        for _ in range(jobs):  # start the workers now: they load the data meanwhile
            pool.submit(int)

        def evaluate(batch: list[tuple[int, dict]], keep_below: float) -> list:
            share.busy.value = len(batch)
            return list(pool.map(_run_trial, *zip(*batch, strict=True), [keep_below] * len(batch)))

        yield evaluate


# each worker's data, and a validator per seed (its folds), built when first asked
_SEEDED: dict[str, Any] = {}


def _start_seeded(frame: pd.DataFrame, y: np.ndarray, train_json: str, threads: int) -> None:
    _SEEDED.update(frame=frame, y=y, train=TrainParams.model_validate_json(train_json))
    _SEEDED.update(threads=threads, validators={})


def _seeded_score(seed: int, point: dict[str, Any]) -> float:
    validators = _SEEDED["validators"]
    if seed not in validators:
        args = (_SEEDED["frame"], _SEEDED["y"], _SEEDED["train"], seed, _SEEDED["threads"])
        validators[seed] = CrossValidator(*args)
    return validators[seed].evaluate(point)[0]


# scores of the points (rows) under each seed (columns): each seed moves the folds and
# LightGBM's seed
Reevaluate = Callable[[list[dict[str, Any]], list[int]], np.ndarray]


@contextmanager
def seeded_runner(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, jobs: int, threads: int
) -> Iterator[Reevaluate]:
    """A function that cross-validates points under other seeds, in this process or in ``jobs``
    spawn workers of ``threads`` LightGBM threads (``worker_plan``), every pair at once."""
    initargs = (frame, y, train.model_dump_json(), threads)
    if jobs == 1:
        _start_seeded(*initargs)
        try:
            yield lambda points, seeds: np.array(
                [[_seeded_score(s, p) for s in seeds] for p in points]
            )
        finally:
            _SEEDED.clear()  # the data and validators are this call's
        return
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=_start_seeded,
        initargs=initargs,
    ) as pool:

        def evaluate(points: list[dict[str, Any]], seeds: list[int]) -> np.ndarray:
            pairs = [(s, p) for p in points for s in seeds]
            scores = list(pool.map(_seeded_score, *zip(*pairs, strict=True)))
            return np.array(scores, dtype=float).reshape(len(points), len(seeds))

        yield evaluate


# ---- checkpoint ----------------------------------------------------------------------------


def checkpoint_key(train: TrainParams, seed: int, data_digest: str) -> str:
    """Changes whenever anything that shapes the search changes (never the runtime section,
    nor what acts only after the search: the finalists, the slices)."""
    shape = train.model_dump(mode="json", exclude={"slices": True, "search": {"finalists"}})
    text = json.dumps({"train": shape, "seed": seed, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WarmStart:
    """Trials of an earlier search (``train.search.warm_start``), told to the optimizer before
    it asks for the first point: ``points`` in the current space, ``scores`` their losses."""

    source: str  # what params named, and the commit it resolved to
    points: list[dict[str, Any]]
    scores: list[float]

    @property
    def digest(self) -> str:
        text = json.dumps([self.points, self.scores], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoint:
    """Where the search starts: finished trials of this search, one JSON line each, appended
    and flushed as they finish, and the warm start (``warm``) it was opened with."""

    def __init__(self, path: Path | None, warm: WarmStart | None = None) -> None:
        self.path = path
        self.warm = warm
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
    runner: AbstractContextManager[Evaluate],
    search: SearchParams,
    seed: int,
    checkpoint: Checkpoint | None = None,
    on_trial: Callable[[Trial], None] = lambda trial: None,
    kept: BestModels | None = None,
) -> list[Trial]:
    """Ask/tell until ``n_calls`` trials are done (or ``time_budget_s`` has passed: then the
    batch under way is the last; the first batch always runs); returns them in order.
    ``runner`` evaluates the trials (``trial_runner``: this process or worker processes; or
    cluster tasks); the checkpoint's warm start is told first; finished trials found in
    ``checkpoint`` are replayed; ``kept`` receives the best trial's fold models."""
    checkpoint = checkpoint or Checkpoint(None)
    kept = kept if kept is not None else BestModels()
    trials: list[Trial] = []
    # the runner starts first: scikit-optimize's import overlaps the workers'
    clock = Budget(search.time_budget_s)
    with runner as evaluate, _progress(search.n_calls, clock) as progress:
        dims = skopt_space(search)
        optimizer = bayesian_optimizer(dims, search, seed)
        if checkpoint.warm and checkpoint.warm.points:
            warm = checkpoint.warm
            xs = [[p[d.name] for d in dims] for p in warm.points]
            tell(optimizer, xs, list(warm.scores), search, search.n_calls)
        while len(trials) < search.n_calls and not (
            trials and clock.spent(len(trials), search.n_calls)
        ):
            size = min(search.batch_size, search.n_calls - len(trials))
            with one_blas_thread():
                xs = [portable_point(dims, x) for x in ask_batch(optimizer, size)]
            batch = [(len(trials) + i, _named(dims, x)) for i, x in enumerate(xs)]
            done = _evaluate_batch(batch, evaluate, checkpoint, kept)
            for number, _ in batch:
                trials.append(done[number])
                on_trial(done[number])
                progress(done[number], min(t.score for t in trials))
            ys = [done[n].score for n, _ in batch]
            tell(optimizer, xs, ys, search, search.n_calls - len(trials))
    return trials


def tell(optimizer: Any, xs: list, ys: list[float], search: SearchParams, left: int) -> None:
    """Tell the optimizer the scores, fitting its GP only if it asks next from its own fit:
    for one point. A batch asks a copy, which fits itself (``ask_batch``); after the last
    batch nothing asks. ``gp_hedge`` always fits: its fit updates the hedge's gains."""
    size = min(search.batch_size, left)
    with one_blas_thread():
        optimizer.tell(xs, ys, fit=size == 1 or (size > 1 and search.acq_func == "gp_hedge"))


def one_blas_thread() -> AbstractContextManager:
    """BLAS on one thread while the Gaussian process fits and proposes: its matrices are a
    few dozen rows, and OpenBLAS's threads, waiting on cores that LightGBM or another process
    holds, made each fit several times slower (the ask test: 16 s on two threads beside a
    busy core, 4.6 s on one)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _named(dims: list, x: list) -> dict[str, Any]:
    return {d.name: to_native(v) for d, v in zip(dims, x, strict=True)}


def _evaluate_batch(
    batch: list[tuple[int, dict]], evaluate: Evaluate, checkpoint: Checkpoint, kept: BestModels
) -> dict[int, Trial]:
    """The batch's trials by number: replayed from the checkpoint, or evaluated and added."""
    done = {n: t for n, p in batch if (t := checkpoint.finished(n, p))}
    for trial in done.values():
        kept.offer(trial, None)
    todo = [(n, p) for n, p in batch if n not in done]
    for trial, models in evaluate(todo, kept.score) if todo else []:
        checkpoint.add(trial)
        kept.offer(trial, models)
        done[trial.number] = trial
    return done


def bayesian_optimizer(dims: list, search: SearchParams, seed: int) -> Any:
    """scikit-optimize's ask/tell ``Optimizer`` with a Gaussian process over ``dims``: its
    initial design (``initial_point_generator``, ``n_initial_points``), acquisition function
    (``acq_func`` with ``xi``/``kappa``) and the GP's noise (``noise``) from ``search``."""
    from skopt import Optimizer
    from skopt.utils import cook_estimator

    rng = np.random.RandomState(seed)  # as Optimizer(random_state=seed) seeds its GP
    gp = cook_estimator(
        "GP", space=dims, random_state=rng.randint(0, np.iinfo(np.int32).max), noise=search.noise
    )
    return Optimizer(
        dims,
        base_estimator=gp,
        n_initial_points=min(search.n_initial_points, search.n_calls),
        initial_point_generator=search.initial_point_generator,
        acq_func=search.acq_func,
        acq_func_kwargs={"xi": search.xi, "kappa": search.kappa},
        acq_optimizer=search.acq_optimizer,
        random_state=rng,
    )


def ask_batch(optimizer: Any, size: int) -> list[list]:
    """``optimizer.ask(n_points=size)`` (constant liar, lie = the lowest loss so far), without
    its last lie: scikit-optimize tells the copy a made-up result for the last point too, a
    Gaussian-process fit that nothing uses. Same points, same random state afterwards."""
    if size == 1:
        return [optimizer.ask()]
    with warnings.catch_warnings():  # the copy draws a Sobol design it replaces by the original's
        warnings.filterwarnings("ignore", "The balance properties of Sobol", UserWarning)
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


@dataclass
class Budget:
    """``train.search.time_budget_s``: seconds the search may start trials in (None: no
    limit), counted from the search's start."""

    seconds: float | None
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float | None:
        return None if self.seconds is None else self.seconds - (time.monotonic() - self.start)

    def spent(self, done: int, wanted: int) -> bool:
        left = self.left()
        if left is None or left > 0:
            return False
        log.warning(
            "search: the time budget of %s s (train.search.time_budget_s) is spent after %d "
            "of %d trials; the result depends on this machine's speed",
            f"{self.seconds:g}",
            done,
            wanted,
        )
        return True


@contextmanager
def _progress(total: int, clock: Budget) -> Iterator[Callable[[Trial, float], None]]:
    """A progress bar on stderr: trials done, best score, elapsed time and ETA, and the time
    left of a time budget."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="search", unit="trial", file=sys.stderr, dynamic_ncols=True)

    def update(trial: Trial, best: float) -> None:
        left = clock.left()
        budget = {} if left is None else {"budget_left": f"{max(left, 0):.0f}s"}
        bar.set_postfix(best=f"{best:.5f}", last=f"{trial.score:.5f}", **budget, refresh=False)
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
