"""Warm starts: the trials of an earlier search seed this one (``train.search.warm_start``).

The source is a DVC experiment name or any git revision (branch, tag, commit). Its trials are
read from git — ``reports/plots/search.csv`` and ``dvc.lock`` as committed at that revision
(``git show``) — so the result depends only on repository state: the same params and
revisions give the same model. A source is refused, with the reason, when it searched another
data version (the ``train`` stage's dep on the features in its ``dvc.lock`` differs from the
features this run trains on), scored another metric or target scale, or searched another set
of dimensions. Its trials outside the current space's bounds are left out (and counted); the
others are told to the optimizer before it asks (``mlpipeline.model.search.run_search``).

A DVC experiment name is looked up among the experiment refs (``refs/exps/..../<name>``),
preferring the experiments of the commit checked out; experiments DVC runs in a temporary copy
(``--temp``, queued) read git at the workspace the copy belongs to.
"""

from __future__ import annotations

import io
import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlpipeline.core.config import (
    OBJECTIVES,
    SEARCH_METRICS,
    CategoricalDim,
    IntegerDim,
    Params,
    SearchParams,
)
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import dvc_md5
from mlpipeline.data.names import SEARCH_HISTORY
from mlpipeline.model.search import WarmStart
from mlpipeline.track.runs import repo_root, store_root

log = logging.getLogger(__name__)

KEY = "train.search.warm_start"
EXP_REFS = "refs/exps"
TOLERANCE = 1e-6  # relative: values written to 6 significant digits may sit just past a bound


def git(root: Path, *args: str) -> str | None:
    """A git command's output at ``root``, or None if it fails."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def experiment_commits(root: Path, name: str) -> dict[str, str]:
    """baseline commit -> experiment commit, of the DVC experiments called ``name``."""
    listed = git(root, "for-each-ref", "--format=%(refname) %(objectname)", EXP_REFS) or ""
    found = {}
    for line in listed.splitlines():
        ref, _, commit = line.partition(" ")
        parts = ref.split("/")  # refs/exps/<baseline[:2]>/<baseline[2:]>/<name>
        if len(parts) == 5 and parts[4] == name and len(parts[2] + parts[3]) == 40:
            found[parts[2] + parts[3]] = commit
    return found


def resolve(root: Path, name: str) -> str:
    """The commit ``name`` stands for: a DVC experiment (of the checked-out commit first), else
    a git revision."""
    experiments = experiment_commits(root, name)
    head = (git(root, "rev-parse", "HEAD") or "").strip()
    if head in experiments:
        return experiments[head]
    if len(experiments) == 1:
        return next(iter(experiments.values()))
    if experiments:
        raise PipelineError(
            f"{KEY}: '{name}' names DVC experiments of {len(experiments)} other commits "
            f"({', '.join(sorted(c[:7] for c in experiments))}); name one by its commit"
        )
    commit = git(root, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if not commit:
        raise PipelineError(
            f"{KEY}: '{name}' is neither a DVC experiment (dvc exp list) nor a git revision "
            "here; name one, or set it to null for a cold start"
        )
    return commit.strip()


def committed(root: Path, commit: str, path: str, what: str) -> str:
    """A file as committed at ``commit``; refused if it is not there."""
    text = git(root, "show", f"{commit}:{path}")
    if text is None:
        raise PipelineError(f"{KEY}: {what} has no {path} (not a pipeline run)")
    return text


def locked_md5(lock: dict, stage: str, dep: str) -> str | None:
    """The hash ``dvc.lock`` records for ``stage``'s dependency ``dep``."""
    deps = (lock.get("stages", {}).get(stage) or {}).get("deps", [])
    return next((d.get("md5") for d in deps if Path(d.get("path", "")) == Path(dep)), None)


def history_paths(lock: dict) -> list[str]:
    """Where the source's search history may be: ``search.csv`` in a folder its train stage
    wrote (``reports/plots`` in this repository's dvc.yaml)."""
    outs = (lock.get("stages", {}).get("train") or {}).get("outs", [])
    return [f"{o['path']}/{SEARCH_HISTORY}" for o in outs if "." not in Path(o["path"]).name]


def scoring(raw: dict) -> tuple[str, str, str, str]:
    """(task, objective, target transform, search metric) of a params tree, ``auto`` resolved:
    what a search's scores mean. Another combination scores on another scale."""
    train = raw.get("train") or {}
    task = (raw.get("dataset") or {}).get("task") or train.get("task") or "regression"
    objective = train.get("objective") or "auto"
    metric = (train.get("search") or {}).get("metric") or "auto"
    return (
        task,
        OBJECTIVES.get(task, ("?",))[0] if objective == "auto" else objective,
        train.get("target_transform") or "none",
        SEARCH_METRICS.get(task, ("?",))[0] if metric == "auto" else metric,
    )


def current_scoring(params: Params) -> tuple[str, str, str, str]:
    train = params.train
    return (train.task, train.objective, train.target_transform, train.search.metric)


def check_source(root: Path, commit: str, what: str, params: Params, features: Path) -> dict:
    """The source's ``dvc.lock``; refused if it searched another data version or scored its
    trials on another scale."""
    lock = yaml.safe_load(committed(root, commit, "dvc.lock", what)) or {}
    theirs, ours = locked_md5(lock, "train", features.as_posix()), dvc_md5(features)
    if theirs != ours:
        raise PipelineError(
            f"{KEY}: {what} searched another data version ({features}: {theirs} in its "
            f"dvc.lock, {ours} here); warm-start from an experiment on these features, or set "
            "it to null"
        )
    source_params = yaml.safe_load(committed(root, commit, "params.yaml", what)) or {}
    theirs_scoring, ours_scoring = scoring(source_params), current_scoring(params)
    if theirs_scoring != ours_scoring:
        names = ("task", "objective", "target_transform", "search metric")
        differ = [
            f"{n} {a} (here {b})"
            for n, a, b in zip(names, theirs_scoring, ours_scoring, strict=True)
            if a != b
        ]
        raise PipelineError(f"{KEY}: {what} scored its trials differently: {', '.join(differ)}")
    return lock


def read_history(root: Path, commit: str, lock: dict, what: str) -> pd.DataFrame:
    """The source's search history, as committed."""
    for path in history_paths(lock):
        text = git(root, "show", f"{commit}:{path}")
        if text is not None:
            return pd.read_csv(io.StringIO(text))
    raise PipelineError(f"{KEY}: {what} has no {SEARCH_HISTORY} in its train outputs")


def in_space(value: Any, dim: Any) -> tuple[bool, Any]:
    """Whether a written value lies in a dimension, and the value in the dimension's type."""
    if isinstance(dim, CategoricalDim):
        match = [c for c in dim.categories if str(c) == str(value)]
        return bool(match), match[0] if match else value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False, value
    slack = TOLERANCE * max(abs(dim.low), abs(dim.high))
    if math.isnan(number) or not dim.low - slack <= number <= dim.high + slack:
        return False, number
    number = min(max(number, dim.low), dim.high)
    return True, round(number) if isinstance(dim, IntegerDim) else number


def told_trials(history: pd.DataFrame, search: SearchParams, what: str) -> WarmStart:
    """The source's trials that lie in the current space; refused if it searched other
    dimensions or none of its trials fits."""
    dims = [c for c in history.columns if c not in HISTORY_COLUMNS]
    if set(dims) != set(search.space):
        there, here = sorted(set(dims) - set(search.space)), sorted(set(search.space) - set(dims))
        raise PipelineError(
            f"{KEY}: {what} searched other dimensions (only there: {there or 'none'}; only "
            f"in train.search.space here: {here or 'none'}); its scores do not fit this space"
        )
    points, scores, outside = [], [], []
    for row in history.to_dict("records"):
        checked = {name: in_space(row[name], dim) for name, dim in search.space.items()}
        bad = [f"{n}={row[n]}" for n, (ok, _) in checked.items() if not ok]
        if bad or not math.isfinite(row["score"]):
            outside.append(f"trial {row['trial']}: {', '.join(bad) or 'no score'}")
            continue
        points.append({n: value for n, (_, value) in checked.items()})
        scores.append(float(row["score"]))
    if outside:
        log.warning("warm start: %d trial(s) of %s left out: %s", len(outside), what, outside)
    if not points:
        raise PipelineError(
            f"{KEY}: none of the {len(history)} trials of {what} lies in train.search.space "
            f"({'; '.join(outside[:5])})"
        )
    return WarmStart(what, points, scores)


HISTORY_COLUMNS = ("trial", "score", "best_score", "score_std", "best_iteration")


def load_warm_start(params: Params, features: Path) -> WarmStart | None:
    """The trials ``train.search.warm_start`` names (None for a cold start), checked against
    this run's features (``features``: the train stage's dependency) and search space."""
    name = params.train.search.warm_start
    if not name:
        return None
    root = store_root(repo_root())
    commit = resolve(root, name)
    what = f"'{name}' ({commit[:7]})"
    lock = check_source(root, commit, what, params, features)
    warm = told_trials(read_history(root, commit, lock, what), params.train.search, what)
    log.info("warm start: %d trial(s) of %s", len(warm.points), what)
    return WarmStart(f"{name}@{commit}", warm.points, warm.scores)
