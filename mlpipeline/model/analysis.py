"""The searches analysed: which configuration is best across experiments (the leaderboard), how
sensitive the CV score is to each search dimension and to the feature set, whether the winner
is robust or a lucky draw of its folds, and a short reading in words.

Pure functions on tables: ``python -m mlpipeline analyze`` (``mlpipeline.commands.analyze``)
reads the trials and experiments from MLflow and DVC, re-evaluates the best configurations, and
writes and logs what these functions return. The model card's section (``card_section``) uses
only the current search's trials, so it is the same wherever the same search ran.

Sensitivity comes from the optimizer's own kind of surrogate: scikit-optimize's Gaussian process
(Matérn kernel, one length scale per dimension, learned noise), fitted with a fixed seed to the
trials in the space's normalised coordinates. A dimension's partial dependence is the
surrogate's mean prediction with that dimension set to each value of a grid, averaged over
random points of the space; its importance is the range of that curve (how much the predicted CV
score moves along it), and its share is that range over the sum of all ranges.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import SearchParams, flatten
from mlpipeline.model.boosting import FEATURE_SET
from mlpipeline.model.search import Reevaluate, skopt_space, to_native
from mlpipeline.model.warmstart import in_space

BACKGROUND_POINTS = 200  # random points of the space the partial dependence averages over
GRID_POINTS = 16  # values of a numeric dimension along its partial dependence
SCORE, STD = "score", "score_std"


# ---- trials ---------------------------------------------------------------------------------


def typed_trials(frame: pd.DataFrame, search: SearchParams) -> pd.DataFrame:
    """Trials (a row each: the point, ``score``, ``score_std`` and any other columns) whose
    points lie in the current space, values in each dimension's type (MLflow keeps params as
    text); the others are left out."""
    rows = []
    for row in frame.to_dict("records"):
        checked = {name: in_space(row.get(name), dim) for name, dim in search.space.items()}
        score = pd.to_numeric(row.get(SCORE), errors="coerce")
        if all(ok for ok, _ in checked.values()) and np.isfinite(score):
            rows.append({**row, **{n: v for n, (_, v) in checked.items()}, SCORE: float(score)})
    columns = list(dict.fromkeys([*search.space, SCORE, STD, *frame.columns]))
    typed = pd.DataFrame(rows, columns=columns)
    typed[STD] = pd.to_numeric(typed[STD], errors="coerce")
    return typed


def pooled_trials(frames: Sequence[pd.DataFrame], search: SearchParams) -> pd.DataFrame:
    """The trials of several searches in the current space (``typed_trials``), each evaluation
    once: a search run again, or replayed from its checkpoint, repeats the same points with
    the same scores (the first frame's copy is kept)."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return typed_trials(pd.DataFrame(columns=[*search.space, SCORE, STD]), search)
    trials = typed_trials(pd.concat(frames, ignore_index=True), search)
    unique = trials.drop_duplicates(subset=[*search.space, SCORE], keep="first")
    return unique.reset_index(drop=True)


def distinct_points(trials: pd.DataFrame, dims: Sequence[str]) -> pd.DataFrame:
    """One row per distinct point (a search run again replays the same points): the mean
    score and fold spread, and how many trials evaluated it; best first."""
    key = trials[list(dims)].astype(str).agg("|".join, axis=1)
    grouped = trials.assign(_key=key).groupby("_key", sort=False)
    first = grouped[list(dims)].first()
    merged = first.assign(
        **{SCORE: grouped[SCORE].mean(), STD: grouped[STD].mean(), "trials": grouped.size()}
    )
    return merged.sort_values([SCORE, *dims], kind="stable").reset_index(drop=True)


def native(point: Mapping[str, Any]) -> dict[str, Any]:
    """A point with plain Python values (a table row gives NumPy scalars)."""
    return {k: to_native(v) for k, v in point.items()}


def point_text(point: Mapping[str, Any]) -> str:
    """``name=value`` pairs, real values to 4 significant digits."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
    )


# ---- sensitivity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sensitivity:
    """Importance of each search dimension and its partial dependence curve."""

    importance: pd.DataFrame  # rank, dimension, effect, share, best_value
    curves: dict[str, pd.DataFrame]  # dimension -> value, cv_score (the surrogate's mean)
    trials: int


def fit_surrogate(trials: pd.DataFrame, search: SearchParams, seed: int) -> tuple[Any, Any]:
    """(the normalised space, scikit-optimize's GP fitted to the trials' scores)."""
    from skopt.space import Space
    from skopt.utils import cook_estimator, normalize_dimensions

    dims = skopt_space(search)
    space = Space(normalize_dimensions(dims))
    x = space.transform([[row[d.name] for d in dims] for row in trials.to_dict("records")])
    model = cook_estimator("GP", space=dims, random_state=seed, noise="gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the kernel's fit
        model.fit(x, trials[SCORE].to_numpy(dtype=float))
    return space, model


def grid_values(dim: Any) -> list:
    """The values a partial dependence visits: every category, or ``GRID_POINTS`` values
    evenly spread in the dimension's normalised (log for log-uniform) coordinate."""
    if hasattr(dim, "categories"):
        return list(dim.categories)
    values = dim.inverse_transform(np.linspace(0.0, 1.0, GRID_POINTS))
    return list(dict.fromkeys(v.item() if hasattr(v, "item") else v for v in values))


def partial_dependence(
    space: Any, model: Any, index: int, background: list[list], grid: list
) -> list[float]:
    """The surrogate's mean prediction with dimension ``index`` set to each grid value."""
    means = []
    for value in grid:
        points = [[*x[:index], value, *x[index + 1 :]] for x in background]
        means.append(float(np.mean(model.predict(space.transform(points)))))
    return means


def sensitivity(trials: pd.DataFrame, search: SearchParams, seed: int) -> Sensitivity:
    """Importance ranking and partial dependence of every dimension of ``search.space``."""
    space, model = fit_surrogate(trials, search, seed)
    background = space.rvs(n_samples=BACKGROUND_POINTS, random_state=seed)
    curves = {}
    for index, dim in enumerate(space.dimensions):
        grid = grid_values(dim)
        scores = partial_dependence(space, model, index, background, grid)
        curves[dim.name] = pd.DataFrame({"value": grid, "cv_score": scores})
    return Sensitivity(importance_table(curves), curves, len(trials))


def importance_table(curves: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Dimensions ranked by the range of their partial dependence (``effect``), with its share
    of all ranges and the value where the curve is lowest."""
    rows = []
    for name, curve in curves.items():
        effect = float(curve["cv_score"].max() - curve["cv_score"].min())
        best = curve["value"].iloc[int(curve["cv_score"].to_numpy().argmin())]
        rows.append({"dimension": name, "effect": effect, "best_value": best})
    table = pd.DataFrame(rows, columns=["dimension", "effect", "best_value"])
    total = table["effect"].sum()
    table.insert(2, "share", table["effect"] / total if total > 0 else 0.0)
    table = table.sort_values(["effect", "dimension"], ascending=[False, True], kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def feature_sets(trials: pd.DataFrame) -> pd.DataFrame:
    """Per feature set: its best trial's CV score with that trial's spread across folds (std),
    the median score and the number of trials; best first. Empty without a feature set
    dimension."""
    columns = ["feature_set", "best", "best_std", "median", "trials"]
    if FEATURE_SET not in trials or trials.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for name, group in trials.groupby(FEATURE_SET, sort=True):
        best = group.loc[group[SCORE].idxmin()]
        rows.append([name, best[SCORE], best[STD], group[SCORE].median(), len(group)])
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["best", "feature_set"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Margin:
    """The winner's lead over the runner-up (the best other point), against its fold spread."""

    winner: float
    winner_std: float
    runner_up: float

    @property
    def lead(self) -> float:
        return self.runner_up - self.winner

    @property
    def within_std(self) -> bool:
        return not self.lead > self.winner_std


def margin(points: pd.DataFrame) -> Margin | None:
    """From distinct points, best first (``distinct_points``); None with fewer than two."""
    if len(points) < 2:
        return None
    best, second = points.iloc[0], points.iloc[1]
    return Margin(float(best[SCORE]), float(best[STD]), float(second[SCORE]))


# ---- robustness ----------------------------------------------------------------------------


def robustness(
    points: Sequence[dict[str, Any]], seeds: Sequence[int], evaluate: Reevaluate
) -> pd.DataFrame:
    """The winner (first point) and runners-up re-evaluated under each seed (``evaluate``:
    ``mlpipeline.model.search.seeded_runner``): a row per point with its score per seed, mean and
    std across seeds, its rank among the points under each seed (1 = best) averaged, and how
    often it ranked first."""
    scores = np.asarray(evaluate(list(points), list(seeds)), dtype=float)
    ranks = scores.argsort(axis=0, kind="stable").argsort(axis=0, kind="stable") + 1
    table = pd.DataFrame(scores, columns=[f"seed {s}" for s in seeds])
    labels = ["winner", *(f"runner-up {i}" for i in range(1, len(points)))]
    table.insert(0, "config", labels)
    table["mean"] = scores.mean(axis=1)
    table["std"] = scores.std(axis=1, ddof=1) if len(seeds) > 1 else 0.0
    table["mean_rank"] = ranks.mean(axis=1)
    table["first"] = (ranks == 1).sum(axis=1)
    table["point"] = [point_text(p) for p in points]
    return table


def cv_test_gap(metrics: Mapping[str, Any], metric: str) -> dict[str, float] | None:
    """The chosen model's out-of-fold (CV) and test value of ``metric``, and the gap."""
    cv, test = metrics.get("cv", {}).get(metric), metrics.get("test", {}).get(metric)
    if cv is None or test is None:
        return None
    return {"cv": cv, "test": test, "gap": test - cv, "relative": (test - cv) / cv if cv else 0}


# ---- leaderboard ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One experiment as DVC or MLflow knows it."""

    name: str  # DVC experiment name ("" for a run outside one; a baseline: its branch or rev)
    rev: str = ""  # git revision: the experiment's commit, or the commit a run started from
    params: dict[str, Any] = field(default_factory=dict)  # flat, dotted keys
    metrics: dict[str, Any] = field(default_factory=dict)  # flat: cv.*, test.*, trials
    cv_std: float = math.nan  # the best trial's spread across folds (MLflow's trials)
    seconds: float = math.nan  # the train stage's wall time (MLflow)
    started: int = 0  # MLflow start time, ms
    same_data: bool | None = None  # trained on the features analysed (None: not known)


def fingerprint(metrics: Mapping[str, Any]) -> tuple:
    """The test metrics and trial count to 6 digits: what names the same results on both sides
    when no experiment name does (a committed ``dvc repro`` run)."""
    keys = sorted(k for k in metrics if k.startswith("test.") or k == "trials")
    return tuple((k, f"{float(metrics[k]):.6g}") for k in keys if _number(metrics[k]))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def latest_runs(runs: Sequence[Entry]) -> list[Entry]:
    """The latest run per DVC experiment name, and per result for runs outside experiments
    (a run repeated gives the same results)."""
    chosen: dict[Any, Entry] = {}
    for run in sorted(runs, key=lambda r: r.started):
        chosen[run.name or fingerprint(run.metrics)] = run
    return sorted(chosen.values(), key=lambda r: r.started)


Pair = tuple[Entry | None, Entry | None]  # (DVC's entry, MLflow's run)


def join_entries(dvc: Sequence[Entry], runs: Sequence[Entry]) -> list[Pair]:
    """DVC's experiments with their MLflow runs (``latest_runs``): by experiment name, else by
    the results' fingerprint. Entries found on one side only are kept, with None on the other."""
    named = {r.name: r for r in runs if r.name}
    printed = {fingerprint(r.metrics): r for r in runs if not r.name}
    pairs: list[Pair] = []
    used: set[int] = set()
    for entry in dvc:
        run = named.get(entry.name) or printed.get(fingerprint(entry.metrics))
        if run is not None and id(run) in used:
            run = None
        if run is not None:
            used.add(id(run))
        pairs.append((entry, run))
    pairs += [(None, run) for run in runs if id(run) not in used]
    return pairs


IGNORED_PARAMS = ("runtime.",)  # how a run ran, never what it found


def changed_params(pairs: Sequence[Pair]) -> list[str]:
    """The params whose values differ between the experiments (where each has the key)."""
    values: dict[str, set[str]] = {}
    for entry, run in pairs:
        for key, value in ((entry or run).params or {}).items():  # type: ignore[union-attr]
            if not key.startswith(IGNORED_PARAMS):
                values.setdefault(key, set()).add(str(value))
    return sorted(k for k, v in values.items() if len(v) > 1)


def leaderboard(dvc: Sequence[Entry], runs: Sequence[Entry], score: str) -> pd.DataFrame:
    """One row per experiment, best CV score first: the name, git revision, where it was found
    (DVC, MLflow or both), whether it trained on the data analysed (``this``) or another version
    (``other``: another split or source), the params that differ between experiments, the CV
    score (``score``:
    ``cv.search_<metric>``) with the best trial's fold spread, the test metrics, the number of
    trials and the train stage's wall time."""
    pairs = join_entries(dvc, latest_runs(runs))
    keys = changed_params(pairs)
    rows = []
    for entry, run in pairs:
        shown = entry or run
        assert shown is not None
        metrics = {**(run.metrics if run else {}), **(entry.metrics if entry else {})}
        params = shown.params or {}
        rows.append(
            {
                "experiment": shown.name or f"(run {run.rev[:7] if run else ''})",
                "rev": shown.rev[:7],
                "found in": "DVC + MLflow" if entry and run else "DVC" if entry else "MLflow",
                "data": {True: "this", False: "other"}.get(shown.same_data, "?"),
                "changed params": ", ".join(f"{k}={params[k]}" for k in keys if k in params),
                "cv score": metrics.get(score, math.nan),
                "cv std": run.cv_std if run else math.nan,
                **{k: v for k, v in metrics.items() if k.startswith("test.")},
                "trials": metrics.get("trials", math.nan),
                "train seconds": run.seconds if run else math.nan,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["cv score", "experiment"], na_position="last").reset_index(drop=True)


def flat_params(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A params tree as dotted keys (``dvc exp show`` gives the file's tree)."""
    return flatten(dict(tree))


# ---- the reading in words ------------------------------------------------------------------


def read_importance(importance: pd.DataFrame, trials: int) -> str:
    """Which dimensions explain most of the surrogate's variation."""
    if importance.empty:
        return "No search dimension to rank."
    shares = importance["share"].to_numpy()
    top = int(np.searchsorted(np.cumsum(shares), 0.7) + 1)  # the fewest that explain 70%
    names = [f"`{n}`" for n in importance["dimension"].iloc[:top]]
    named = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb = "explains" if len(names) == 1 else "explain"
    return (
        f"{named} {verb} {shares[:top].sum():.1%} of the CV score's variation along the "
        f"search dimensions (the surrogate's partial dependence over {trials} trials); "
        f"`{importance['dimension'].iloc[-1]}` matters least ({shares[-1]:.1%})."
    )


def read_feature_sets(sets: pd.DataFrame) -> str | None:
    """Whether the best feature set beats the next by more than the fold spread."""
    if len(sets) < 2:
        return None
    best, other = sets.iloc[0], sets.iloc[1]
    lead = other["best"] - best["best"]
    spread = max(best["best_std"], other["best_std"])
    verdict = "more than" if lead > spread else "within"
    return (
        f"Feature set `{best['feature_set']}` scores best ({best['best']:.5g} ± "
        f"{best['best_std']:.2g} across folds) and beats `{other['feature_set']}` "
        f"({other['best']:.5g} ± {other['best_std']:.2g}) by {lead:.2g}, {verdict} one fold std."
    )


def read_margin(found: Margin | None) -> str | None:
    if found is None:
        return None
    verdict = "within" if found.within_std else "more than"
    return (
        f"The winner's lead over the runner-up ({found.lead:.2g}) is {verdict} one CV std "
        f"of the winner ({found.winner_std:.2g})"
        + (": the search has no clear winner." if found.within_std else ".")
    )


def read_robustness(table: pd.DataFrame | None) -> str | None:
    """Whether the winner stays best under other CV seeds."""
    if table is None or table.empty:
        return None
    winner, seeds = table.iloc[0], len([c for c in table.columns if c.startswith("seed ")])
    best = int(table["mean"].to_numpy().argmin())
    if best != 0:
        verdict = (
            f"not robust: {table['config'].iloc[best]} scores better on average, so a lucky "
            "draw of the search's folds may have chosen the winner"
        )
    elif winner["first"] * 2 > seeds:
        verdict = "robust: best on average and on most seeds"
    else:
        verdict = "best on average but not on most seeds: its lead is within the seeds' spread"
    return (
        f"Under {seeds} other CV seeds the winner scores {winner['mean']:.5g} ± "
        f"{winner['std']:.2g}, ranks first on {winner['first']} of {seeds} seeds among the "
        f"{len(table)} best configurations (mean rank {winner['mean_rank']:.2g}): {verdict}."
    )


def read_gap(gap: Mapping[str, float] | None, metric: str) -> str | None:
    if gap is None:
        return None
    direction = "above" if gap["gap"] > 0 else "below"
    return (
        f"The test {metric} ({gap['test']:.5g}) is {abs(gap['relative']):.1%} {direction} the "
        f"out-of-fold CV {metric} ({gap['cv']:.5g})."
    )


def reading(
    found: Sensitivity,
    sets: pd.DataFrame,
    lead: Margin | None,
    robust: pd.DataFrame | None = None,
    gap: tuple[Mapping[str, float] | None, str] = (None, ""),
) -> list[str]:
    """The analysis in a few sentences."""
    sentences = [
        read_importance(found.importance, found.trials),
        read_feature_sets(sets),
        read_margin(lead),
        read_robustness(robust),
        read_gap(*gap),
    ]
    return [s for s in sentences if s]


# ---- Markdown ------------------------------------------------------------------------------


def markdown_table(frame: pd.DataFrame, digits: int = 5) -> str:
    """A Markdown table; real numbers to ``digits`` significant digits, missing ones as -."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "-" if math.isnan(value) else f"{value:.{digits}g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def card_section(history: pd.DataFrame, search: SearchParams, seed: int) -> str:
    """The model card's "Sensitivity and robustness" section, from this search's trials only
    (``reports/plots/search.csv``): the same wherever the same search ran."""
    trials = typed_trials(history, search)
    head = "## Sensitivity and robustness\n"
    more = (
        "- Across experiments (leaderboard) and under other CV seeds (robustness): "
        "`python -m mlpipeline analyze` writes `reports/analysis/` and logs it to MLflow."
    )
    if len(trials) < 2:
        return f"{head}- Too few trials to analyse ({len(trials)}).\n{more}\n"
    found = sensitivity(trials, search, seed)
    # one decimal: another CPU's last bits move a share by far less than 0.1, and check_lock
    # allows one unit in the last digit written (an integer would have to match exactly)
    shares = [f"{share * 100:.1f}" for share in found.importance["share"]]
    table = found.importance[["rank", "dimension"]].assign(**{"share (%)": shares})
    sentences = reading(found, feature_sets(trials), margin(distinct_points(trials, search.space)))
    return "\n".join(
        [
            head,
            f"From this search's {len(trials)} trials: the CV score's sensitivity to each "
            f"search dimension (a Gaussian-process surrogate fitted with seed {seed}).\n",
            markdown_table(table),
            "",
            *(f"- {s}" for s in sentences),
            more,
            "",
        ]
    )


# ---- plots ---------------------------------------------------------------------------------


def _figure(width: float = 5.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _save(fig: Any, path: Any) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version or date in the file
    plt.close(fig)


def plot_dependence(
    name: str, curve: pd.DataFrame, trials: pd.DataFrame, path: Any, log_scale: bool = False
) -> None:
    """One dimension's partial dependence over the trials' scores (PNG)."""
    fig, ax = _figure()
    categorical = not pd.api.types.is_numeric_dtype(curve["value"]) or name == FEATURE_SET
    if categorical:
        positions = {str(v): i for i, v in enumerate(curve["value"])}
        ax.plot(range(len(curve)), curve["cv_score"], "o-", label="surrogate (partial dependence)")
        x = trials[name].astype(str).map(positions)
        ax.set_xticks(range(len(curve)), [str(v) for v in curve["value"]])
    else:
        ax.plot(curve["value"], curve["cv_score"], "-", label="surrogate (partial dependence)")
        x = trials[name]
        if log_scale:
            ax.set_xscale("log")
    ax.scatter(x, trials[SCORE], s=12, alpha=0.6, color="tab:orange", label="trials")
    ax.set_xlabel(name)
    ax.set_ylabel("CV score (lower is better)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_importance(importance: pd.DataFrame, path: Any) -> None:
    """Each dimension's share of the partial dependences' ranges (PNG)."""
    fig, ax = _figure(5.0, 0.5 + 0.4 * max(len(importance), 1))
    ordered = importance.iloc[::-1]
    ax.barh(ordered["dimension"], ordered["share"] * 100)
    ax.set_xlabel("share of the CV score's variation (%)")
    _save(fig, path)


def plot_robustness(table: pd.DataFrame, path: Any) -> None:
    """Each configuration's score under each seed, with the mean (PNG)."""
    fig, ax = _figure()
    seeds = [c for c in table.columns if c.startswith("seed ")]
    for row, (_, config) in enumerate(table.iterrows()):
        ax.scatter([row] * len(seeds), config[seeds], s=14, alpha=0.7)
        ax.errorbar(row, config["mean"], yerr=config["std"], fmt="_k", capsize=6)
    ax.set_xticks(range(len(table)), table["config"])
    ax.set_ylabel("CV score under another seed")
    _save(fig, path)
