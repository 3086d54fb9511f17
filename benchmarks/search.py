"""Benchmark the ``train`` stage's search: Bayesian vs random, and the cost of its parallelism.

(a) Search efficiency. On a fixed 10,000-row sample of the training features (LightGBM capped
at 300 rounds, early stopping after 30), the repository's search space is explored with the
project's Bayesian search (``mlpipeline.model.search.run_search``, one run of the largest budget per
seed) and with random search (``skopt.space.Space(...).rvs(n, random_state=seed)``, evaluated
with the same ``CrossValidator``: same folds, LightGBM params and seed). The running best CV
score after each budget is compared seed by seed; both methods use the same seeds, and a seed
fixes the CV folds, so each seed is a paired comparison. scikit-optimize's ``dummy_minimize``
is not used (it is broken with scikit-learn 1.9).

(b) Parallel wall time. ``run_search`` on the full training features with the repository's
params (but ``n_calls`` reduced) runs with ``n_jobs=1`` (``runtime.search_jobs`` 1: one
process, 2 LightGBM threads) and ``n_jobs=2`` (a spawn pool of 2 workers, 1 thread each),
against a bare loop in this process that calls ``lightgbm.cv`` on exactly the points the search
evaluated, with the same params, folds and early stopping and 2 threads. Only the ``lgb.cv``
calls and the ``lgb.Dataset`` built once per feature set are timed in the bare loop; the search
timings are the whole ``run_search`` call (optimizer, process pool start-up, data transfer to
the workers, progress bar).

    python -m benchmarks.search [--quick] [--out benchmarks/results_search.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import command_line, load_1min, machine, positive, timed, versions
from mlpipeline.core.config import Params, TrainParams, load_params
from mlpipeline.features.transform import transform_target
from mlpipeline.model.boosting import CrossValidator, cores, feature_columns, model_params
from mlpipeline.model.search import (
    Trial,
    kept_trial,
    run_search,
    skopt_space,
    to_native,
    trial_runner,
    worker_plan,
)

log = logging.getLogger(__name__)

PARAMS = Path("params.yaml")
FEATURES = Path("data/features/train.parquet")
OUT = Path("benchmarks/results_search.md")
SAMPLE_ROWS = 10_000
SAMPLE_SEED = 20240611
THREADS = 2  # LightGBM threads in all (the machine's cores)
EFFICIENCY_ROUNDS = {"max_rounds": 300, "early_stopping_rounds": 30}
EFFICIENCY_JOBS = 1  # (a) runs each search in this process, with all THREADS
VERSIONS = ("lightgbm", "scikit-optimize", "scikit-learn", "numpy", "pandas")


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark run."""

    seeds: int
    budgets: tuple[int, ...]
    parallel_calls: int
    repeat: int


FULL = Mode(seeds=5, budgets=(10, 16, 20, 40), parallel_calls=8, repeat=3)
QUICK = Mode(seeds=2, budgets=(6, 12), parallel_calls=4, repeat=1)


# ---------------------------------------------------------------------------------------------
# Data and params


def load_features(path: Path, target: str, how: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The features and the transformed target, as ``stages.train`` loads them."""
    frame = pd.read_parquet(path)
    actual = frame.pop(target).to_numpy(dtype=float)
    return frame, transform_target(actual, how)


def sample_rows(
    frame: pd.DataFrame, y: np.ndarray, rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows`` rows drawn without replacement, with their targets."""
    picks = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    return frame.iloc[picks].reset_index(drop=True), y[picks]


def with_search(train: TrainParams, **update: Any) -> TrainParams:
    """``train`` with some ``search`` settings replaced, validated again."""
    search = train.search.model_dump() | update
    return TrainParams.model_validate(train.model_dump() | {"search": search})


def search(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, jobs: int
) -> list[Trial]:
    """The project's search as the train stage runs it: ``jobs`` processes
    (``runtime.search_jobs``) sharing ``THREADS`` LightGBM threads (``worker_plan``)."""
    processes, threads = worker_plan(train.search.batch_size, jobs, THREADS)
    runner = trial_runner(frame, y, train, seed, processes, threads)
    return run_search(runner, train.search, seed)


def point_of(dims: Sequence[Any], x: Sequence[Any]) -> dict[str, Any]:
    """A point as ``run_search`` builds it: dimension name -> plain Python value."""
    return {d.name: to_native(v) for d, v in zip(dims, x, strict=True)}


# ---------------------------------------------------------------------------------------------
# (a) Search efficiency


@dataclass
class SearchRun:
    """One search of one seed: its trials and its wall time."""

    method: str
    seed: int
    trials: list[Trial]
    seconds: float
    n_initial_points: int

    def best_after(self, calls: int) -> float:
        """The best score among the first ``calls`` trials."""
        return min(t.score for t in self.trials[:calls])

    @property
    def fit_seconds(self) -> float:
        """Time spent in the trials themselves (LightGBM CV)."""
        return sum(t.seconds for t in self.trials)


def random_search(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, threads: int
) -> list[Trial]:
    """``n_calls`` points drawn uniformly (in each prior) from the space, cross-validated."""
    from skopt.space import Space

    dims = skopt_space(train.search)
    xs = Space(dims).rvs(train.search.n_calls, random_state=seed)
    cv = CrossValidator(frame, y, train, seed, threads)
    trials = []
    for number, x in enumerate(xs):
        trials.append(kept_trial(cv, number, point_of(dims, x), keep_below=float("-inf"))[0])
    return trials


def run_efficiency(
    frame: pd.DataFrame,
    y: np.ndarray,
    train: TrainParams,
    seeds: Sequence[int],
    loads: list[float],
) -> list[SearchRun]:
    """A Bayesian and a random search per seed, of ``train.search.n_calls`` calls each."""
    runs = []
    initial = min(train.search.n_initial_points, train.search.n_calls)
    for seed in seeds:
        seconds, trials = timed(lambda s=seed: search(frame, y, train, s, EFFICIENCY_JOBS))
        runs.append(SearchRun("bayesian", seed, trials, seconds, initial))
        loads.append(load_1min())
        seconds, trials = timed(lambda s=seed: random_search(frame, y, train, s, THREADS))
        runs.append(SearchRun("random", seed, trials, seconds, initial))
        loads.append(load_1min())
        log.info(
            "seed %d: best after %d calls: bayesian %.5f (%.0f s), random %.5f (%.0f s)",
            seed,
            train.search.n_calls,
            runs[-2].best_after(train.search.n_calls),
            runs[-2].seconds,
            runs[-1].best_after(train.search.n_calls),
            runs[-1].seconds,
        )
    return runs


def aligned(calls: int, train: TrainParams) -> bool:
    """Whether the first ``calls`` trials of a longer Bayesian run are a ``calls``-call run."""
    search = train.search
    return calls % search.batch_size == 0 and calls >= search.n_initial_points


def check_prefix(
    frame: pd.DataFrame, y: np.ndarray, train: TrainParams, seed: int, long: SearchRun, calls: int
) -> str:
    """Run a ``calls``-call Bayesian search and compare it with the long run's first trials."""
    short = search(frame, y, with_search(train, n_calls=calls), seed, EFFICIENCY_JOBS)
    same_points = [t.point for t in short] == [t.point for t in long.trials[:calls]]
    gap = max(abs(a.score - b.score) for a, b in zip(short, long.trials, strict=False))
    verdict = "identical points" if same_points else "**different points**"
    return (
        f"checked for seed {seed}: a separate {calls}-call run gives {verdict} and scores "
        f"within {gap:.1e} of the first {calls} trials of the {long.trials[-1].number + 1}-call run"
    )


@dataclass
class Efficiency:
    """(a): the search settings, the seeds, every run, the prefix check and the wall time."""

    train: TrainParams
    seeds: list[int]
    runs: list[SearchRun]
    prefix: str
    seconds: float


def measure_efficiency(
    params: Params, frame: pd.DataFrame, y: np.ndarray, mode: Mode, seeds_n: int, loads: list
) -> Efficiency:
    """(a) on a sample of the rows: both methods per seed, and the prefix check."""
    small, small_y = sample_rows(frame, y, SAMPLE_ROWS, SAMPLE_SEED)
    train = with_search(params.train, n_calls=max(mode.budgets), **EFFICIENCY_ROUNDS)
    seeds = [params.seed + i for i in range(seeds_n)]
    log.info(
        "(a) %d seeds x %d calls x 2 methods on %d rows", seeds_n, max(mode.budgets), SAMPLE_ROWS
    )
    started = time.perf_counter()
    runs = run_efficiency(small, small_y, train, seeds, loads)
    check_calls = min(c for c in mode.budgets if c < max(mode.budgets))
    prefix = check_prefix(small, small_y, train, seeds[0], runs[0], check_calls)
    return Efficiency(train, seeds, runs, prefix, time.perf_counter() - started)


def efficiency_table(runs: Sequence[SearchRun], budgets: Sequence[int]) -> str:
    """Median best score per budget and method, with the paired comparison."""
    seeds = sorted({r.seed for r in runs})
    by = {(r.method, r.seed): r for r in runs}
    lines = [
        "| calls | Bayesian median best (min–max) | random median best (min–max) | "
        "median of random − Bayesian | Bayesian better |",
        "|---:|---:|---:|---:|---:|",
    ]
    for calls in budgets:
        bayes = [by["bayesian", s].best_after(calls) for s in seeds]
        rand = [by["random", s].best_after(calls) for s in seeds]
        diffs = [r - b for b, r in zip(bayes, rand, strict=True)]
        wins = sum(d > 0 for d in diffs)
        lines.append(
            f"| {calls} | {statistics.median(bayes):.5f} ({min(bayes):.5f}–{max(bayes):.5f}) | "
            f"{statistics.median(rand):.5f} ({min(rand):.5f}–{max(rand):.5f}) | "
            f"{statistics.median(diffs):+.5f} | {wins}/{len(seeds)} seeds |"
        )
    return "\n".join(lines)


def efficiency_details(runs: Sequence[SearchRun], budgets: Sequence[int]) -> str:
    """Every seed's running best per budget, wall time and CV time."""
    heads = " | ".join(f"best@{c}" for c in budgets)
    lines = [
        f"| seed | method | {heads} | best feature set | wall (s) | of which CV (s) |",
        "|---:|---|" + "---:|" * len(budgets) + "---|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r.seed, r.method)):
        best = min(r.trials, key=lambda t: (t.score, t.number))
        scores = " | ".join(f"{r.best_after(c):.5f}" for c in budgets)
        lines.append(
            f"| {r.seed} | {r.method} | {scores} | {best.point.get('feature_set', '-')} | "
            f"{r.seconds:.1f} | {r.fit_seconds:.1f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# (b) Parallel wall time


@dataclass
class ParallelResult:
    """Wall times of the searches and of the bare loop, and the checks that they agree."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    fit_seconds: dict[str, list[float]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    same_points: bool = True
    max_score_gap: float = 0.0
    reference_scores: list[float] = field(default_factory=list)  # of the first search run

    def median(self, label: str) -> float:
        return statistics.median(self.seconds[label])

    def add_search(self, label: str, seconds: float, trials: Sequence[Trial]) -> None:
        """One timed search run; the first one's points and scores are the reference."""
        self.seconds.setdefault(label, []).append(seconds)
        self.fit_seconds.setdefault(label, []).append(sum(t.seconds for t in trials))
        if not self.reference_scores:
            self.reference_scores = [t.score for t in trials]
            self.points = [t.point for t in trials]
        self.same_points &= [t.point for t in trials] == self.points
        self._widen_gap([t.score for t in trials])

    def add_bare_loop(self, seconds: float, scores: Sequence[float]) -> None:
        """One timed bare loop (all of its time is CV time)."""
        self.seconds.setdefault("bare loop", []).append(seconds)
        self.fit_seconds.setdefault("bare loop", []).append(seconds)
        self._widen_gap(scores)

    def _widen_gap(self, scores: Sequence[float]) -> None:
        gaps = (abs(a - b) for a, b in zip(scores, self.reference_scores, strict=True))
        self.max_score_gap = max(self.max_score_gap, *gaps)


def bare_loop(
    frame: pd.DataFrame,
    y: np.ndarray,
    train: TrainParams,
    seed: int,
    points: Sequence[dict[str, Any]],
    folds: list,
) -> tuple[float, list[float]]:
    """Time ``lgb.cv`` on each point (and the Dataset per feature set); the scores."""
    import lightgbm as lgb

    search = train.search
    datasets: dict[tuple[str, ...], Any] = {}
    scores, seconds = [], 0.0
    for point in points:
        columns = tuple(feature_columns(train, point, frame.columns))
        params = model_params(point, train, seed, THREADS)
        start = time.perf_counter()
        if columns not in datasets:
            datasets[columns] = lgb.Dataset(
                frame[list(columns)],
                label=y,
                free_raw_data=False,
                params={"feature_pre_filter": False, "verbosity": -1, "num_threads": THREADS},
            )
        result = lgb.cv(
            params,
            datasets[columns],
            num_boost_round=search.max_rounds,
            folds=folds,
            callbacks=[lgb.early_stopping(search.early_stopping_rounds, verbose=False)],
            return_cvbooster=True,
        )
        seconds += time.perf_counter() - start
        scores.append(float(result[f"valid {search.metric}-mean"][-1]))
    return seconds, scores


def run_parallel(
    frame: pd.DataFrame,
    y: np.ndarray,
    train: TrainParams,
    seed: int,
    repeat: int,
    loads: list[float],
) -> ParallelResult:
    """``run_search`` with n_jobs=1 and 2, and the bare loop, interleaved ``repeat`` times."""
    searches = {f"search n_jobs={jobs}": jobs for jobs in (1, 2)}
    for label, jobs in searches.items():
        processes, threads = worker_plan(train.search.batch_size, jobs, THREADS)
        log.info("%s: %d process(es) x %d LightGBM thread(s)", label, processes, threads)
    folds = CrossValidator(frame, y, train, seed, THREADS).folds
    result = ParallelResult()
    for run in range(1, repeat + 1):
        for label, jobs in searches.items():
            seconds, trials = timed(lambda j=jobs: search(frame, y, train, seed, j))
            result.add_search(label, seconds, trials)
            loads.append(load_1min())
            log.info("run %d/%d: %s %.1f s", run, repeat, label, seconds)
        seconds, scores = bare_loop(frame, y, train, seed, result.points, folds)
        result.add_bare_loop(seconds, scores)
        loads.append(load_1min())
        log.info("run %d/%d: bare loop %.1f s", run, repeat, seconds)
    return result


@dataclass
class Parallel:
    """(b): the search settings, the timings and the wall time."""

    train: TrainParams
    result: ParallelResult
    seconds: float


def measure_parallel(
    params: Params, frame: pd.DataFrame, y: np.ndarray, mode: Mode, repeat: int, loads: list
) -> Parallel:
    """(b) on all training rows, with ``n_calls`` reduced to the mode's."""
    train = with_search(params.train, n_calls=mode.parallel_calls)
    log.info("(b) %d calls, %d repeat(s), %d rows", mode.parallel_calls, repeat, len(frame))
    started = time.perf_counter()
    result = run_parallel(frame, y, train, params.seed, repeat, loads)
    return Parallel(train, result, time.perf_counter() - started)


def parallel_table(result: ParallelResult) -> str:
    """Median wall time per variant, and its ratio to the bare loop."""
    bare = result.median("bare loop")
    layout = {
        "search n_jobs=1": "1 × 2 threads",
        "search n_jobs=2": "2 × 1 thread",
        "bare loop": "1 × 2 threads",
    }
    lines = [
        "| variant | processes × LightGBM threads | median wall (s) | runs (s) | / bare loop |",
        "|---|---|---:|---|---:|",
    ]
    for label, runs in result.seconds.items():
        each = ", ".join(f"{s:.1f}" for s in runs)
        lines.append(
            f"| {label} | {layout[label]} | {result.median(label):.1f} | {each} | "
            f"{result.median(label) / bare:.2f}× |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Report


def interpretation(
    runs: Sequence[SearchRun], budgets: Sequence[int], parallel: ParallelResult
) -> str:
    """A few sentences drawn from the figures."""
    lines = [budget_sentence(runs, calls) for calls in budgets]
    lines.append(optimizer_sentence(runs, budgets[-1]))
    lines += parallel_sentences(parallel)
    return "\n".join(lines)


def budget_sentence(runs: Sequence[SearchRun], calls: int) -> str:
    """Which method is ahead after ``calls`` calls, how often Bayesian wins, and its spread."""
    seeds = sorted({r.seed for r in runs})
    by = {(r.method, r.seed): r for r in runs}
    diffs = [by["random", s].best_after(calls) - by["bayesian", s].best_after(calls) for s in seeds]
    wins = sum(d > 0 for d in diffs)
    median = statistics.median(diffs)
    leader = "Bayesian" if median > 0 else "random"
    spread = [by["bayesian", s].best_after(calls) for s in seeds]
    initial = calls <= runs[0].n_initial_points
    note = " (all Bayesian calls so far are its random initial design)" if initial else ""
    return (
        f"- After {calls} calls{note} the {leader} search is ahead by a median of "
        f"{abs(median):.5f} RMSE (log scale); Bayesian wins on {wins} of {len(seeds)} seeds; "
        f"the Bayesian best varies by {max(spread) - min(spread):.5f} across seeds."
    )


def optimizer_sentence(runs: Sequence[SearchRun], calls: int) -> str:
    """The Bayesian optimizer's own time: wall time outside the trials."""
    bayes = [r for r in runs if r.method == "bayesian"]
    overhead = statistics.median(r.seconds - r.fit_seconds for r in bayes)
    share = statistics.median((r.seconds - r.fit_seconds) / r.seconds for r in bayes)
    return (
        f"- The Bayesian optimizer's own time (GP fits, acquisition, constant-liar batches) is a "
        f"median of {overhead:.1f} s per {calls}-call run, {share:.0%} of its wall time "
        f"on this small sample; random search has none."
    )


def parallel_sentences(parallel: ParallelResult) -> list[str]:
    """The searches against the bare loop, and whether every run agrees."""
    bare = parallel.median("bare loop")
    one = parallel.median("search n_jobs=1")
    two = parallel.median("search n_jobs=2")
    agree = "the same" if parallel.same_points else "**different**"
    return [
        f"- With n_jobs=1 the search takes {one / bare:.2f}× the bare LightGBM loop "
        f"({one - bare:+.1f} s over {len(parallel.points)} trials: skopt ask/tell, the "
        f"progress bar, and noise). With n_jobs=2 it takes {two / bare:.2f}× the bare loop, i.e. "
        f"{one / two:.2f}× the speed of n_jobs=1; its time includes starting 2 spawn workers "
        f"(interpreter, imports) and sending them the data once per search.",
        f"- Every search run evaluated {agree} points whatever n_jobs, and all scores (n_jobs=1, "
        f"n_jobs=2 and the bare loop) agree within {parallel.max_score_gap:.1e}.",
    ]


def efficiency_section(efficiency: Efficiency, budgets: Sequence[int]) -> str:
    """(a): the table, how it was measured, and every seed's figures."""
    return "\n".join(
        [
            efficiency_table(efficiency.runs, budgets) + "\n",
            *efficiency_method(efficiency, budgets),
            "\n### Per seed\n\n" + efficiency_details(efficiency.runs, budgets),
        ]
    )


def efficiency_method(efficiency: Efficiency, budgets: Sequence[int]) -> list[str]:
    """(a): data, search settings, seeds, and why the best after k calls is a k-call run."""
    train, s = efficiency.train, efficiency.train.search
    alignment = ", ".join(
        f"{c}: {'aligned' if aligned(c, train) else 'not aligned'}" for c in budgets
    )
    return [
        f"- Data: {SAMPLE_ROWS:,} rows of `{FEATURES}` drawn without replacement "
        f"(seed {SAMPLE_SEED}); target {train.target_transform}; score = "
        f"{s.cv_folds}-fold CV {s.metric} of the transformed target",
        f"- Search: the space of `{PARAMS}` unchanged ({', '.join(s.space)}); "
        f"max_rounds {s.max_rounds}, early_stopping_rounds {s.early_stopping_rounds}; "
        f"Bayesian = `run_search` (GP with {s.noise} noise; {acquisition(s)}; "
        f"{s.initial_point_generator} initial design of n_initial_points "
        f"{s.n_initial_points}; batch_size {s.batch_size}), n_jobs=1 with "
        f"{THREADS} LightGBM threads; random = `Space(skopt_space(search)).rvs("
        f"{s.n_calls}, random_state=seed)` through the same `CrossValidator`, "
        f"{THREADS} threads",
        f"- Seeds {', '.join(map(str, efficiency.seeds))} for both methods; a seed also fixes "
        f"the CV folds and LightGBM's seed, so each seed is a paired comparison on the same folds",
        f"- One {s.n_calls}-call run per seed and method; the best after k calls is the "
        f"running best of its first k trials. For the Bayesian search that is "
        f"guaranteed to equal a k-call run when k is a multiple of batch_size "
        f"({s.batch_size}) and at least "
        f"n_initial_points ({s.n_initial_points}), so the batches and the initial design "
        f"align ({alignment}); {efficiency.prefix}. For random search the first k of "
        f"{s.n_calls} draws are not the draws of `rvs(k)` but are equally independent uniform "
        "draws",
        f"- The first n_initial_points ({s.n_initial_points}) Bayesian calls are the "
        f"optimizer's own initial design ({s.initial_point_generator}; a randomised design "
        "follows the seed): up to that budget no Gaussian process has proposed a point",
    ]


def acquisition(search: Any) -> str:
    """The acquisition function with the parameter it uses."""
    knob = {"EI": f"xi {search.xi}", "PI": f"xi {search.xi}", "LCB": f"kappa {search.kappa}"}
    used = knob.get(search.acq_func, f"xi {search.xi}, kappa {search.kappa}")
    return f"{search.acq_func} ({used}, acq_optimizer {search.acq_optimizer})"


def parallel_section(parallel: Parallel, rows: int, seed: int, repeat: int) -> str:
    """(b): the table, how it was measured, and the points evaluated."""
    ps, result = parallel.train.search, parallel.result
    cv_times = "; ".join(
        f"{label} {statistics.median(v):.1f} s"
        for label, v in result.fit_seconds.items()
        if label != "bare loop"
    )
    return "\n".join(
        [
            parallel_table(result) + "\n",
            f"- Data: all {rows:,} rows of `{FEATURES}`; the params of `{PARAMS}` "
            f"with n_calls {ps.n_calls} (batch_size {ps.batch_size}, n_initial_points "
            f"{ps.n_initial_points}, max_rounds {ps.max_rounds}, early_stopping_rounds "
            f"{ps.early_stopping_rounds}, {ps.cv_folds} folds), seed {seed}",
            "- Search: the whole `run_search` call; n_jobs=2 starts a spawn pool of 2 "
            "workers in each call. Bare loop: `lgb.cv` on the same points, params and folds "
            "in this process, timing only `lgb.cv` and the `lgb.Dataset` built once per "
            "feature set",
            f"- {repeat} interleaved repeat(s) (n_jobs=1, n_jobs=2, bare) of each; medians "
            "reported. CV time inside the searches (sum of trial times; overlapping with "
            "n_jobs=2): " + cv_times,
            "- Points evaluated (in order, the same in every run):",
            *("  - " + point_text(p) for p in result.points),
        ]
    )


def point_text(point: dict[str, Any]) -> str:
    """``name=value`` pairs, real values to 3 significant digits."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
    )


def run_context(
    quick: bool, load_before: tuple, loads: list[float], timings: tuple[float, float, float]
) -> dict[str, str]:
    """Date, machine, versions, mode, load and wall time; ``timings``: when the benchmark
    started, and the seconds of (a) and (b)."""
    started, a_seconds, b_seconds = timings
    load_after = os.getloadavg()
    return {
        "Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "Platform": (machine()),
        "Versions": versions(VERSIONS),
        "Mode": "quick (smoke test)" if quick else "full",
        "Load average (1 min)": (
            f"{load_before[0]:.2f} at start, {load_after[0]:.2f} at the end, at most "
            f"{max(loads):.2f} after a measurement (this benchmark alone keeps it near "
            f"{THREADS}; more means other processes shared the {cores()} cores)"
        ),
        "Wall time": (
            f"{time.perf_counter() - started:.0f} s in all ((a) {a_seconds:.0f} s, "
            f"(b) {b_seconds:.0f} s)"
        ),
    }


def render(sections: dict[str, str], context: dict[str, str], command: str) -> str:
    """The whole results file."""
    facts = "\n".join(f"- {key}: {value}" for key, value in context.items())
    parts = ["# Search benchmark: Bayesian vs random, and parallel wall time"]
    parts += [f"Command (from the repository root): `{command}`", facts]
    parts += [f"## {title}\n\n{body}" for title, body in sections.items()]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 seeds, 6/12 calls, 1 repeat"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    parser.add_argument("--seeds", type=positive, help="seeds of (a) (overrides the mode)")
    parser.add_argument("--repeat", type=positive, help="timed runs of (b) (overrides the mode)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a train.search setting instead of params.yaml's (YAML value), e.g. acq_func=EI; "
        "repeatable",
    )
    return parser.parse_args(argv)


def with_settings(params: Params, settings: Sequence[str]) -> Params:
    """``params`` with ``train.search`` settings replaced (``KEY=VALUE``, the value as YAML)."""
    import yaml

    update = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {item}: not KEY=VALUE")
        update[key.removeprefix("train.search.")] = yaml.safe_load(value)
    return params.model_copy(update={"train": with_search(params.train, **update)})


def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements, write the report to ``--out`` and print it."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    logging.getLogger("mlpipeline").setLevel(logging.INFO)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    mode = QUICK if args.quick else FULL
    seeds_n, repeat = args.seeds or mode.seeds, args.repeat or mode.repeat
    started, load_before = time.perf_counter(), os.getloadavg()

    params = with_settings(load_params(PARAMS), args.set)
    frame, y = load_features(FEATURES, params.featurize.target, params.train.target_transform)
    log.info("%s: %d rows, %d columns; %d usable cores", FEATURES, *frame.shape, cores())
    loads: list[float] = []
    efficiency = measure_efficiency(params, frame, y, mode, seeds_n, loads)
    parallel = measure_parallel(params, frame, y, mode, repeat, loads)

    sections = {
        "(a) Search efficiency: best CV score after k calls (lower is better)": (
            efficiency_section(efficiency, mode.budgets)
        ),
        "(b) Parallel wall time of run_search vs a bare LightGBM loop": parallel_section(
            parallel, len(frame), params.seed, repeat
        ),
        "Interpretation": interpretation(efficiency.runs, mode.budgets, parallel.result),
    }
    timings = (started, efficiency.seconds, parallel.seconds)
    context = run_context(args.quick, load_before, loads, timings)
    report = render(sections, context, command_line("benchmarks.search", argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    log.info("wrote %s", args.out)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
