"""Your own data in one command: ``init --source FILE --target COLUMN``, then ``dvc repro``,
with no hand edits — on three tables built here: a regression table with missing values, a
date, an id, free text and rows without a target; a binary table with a text target; a
multiclass table with missing values in a categorical column. For each: sane metrics,
``monitor`` on a sample of the table finds no drift, ``predict`` scores whole raw rows
(dropped columns and missing values included), the served model answers them over HTTP, and
the unit tests pass on the adapted repository.
"""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.helpers import copy_repository
from tests.integration.conftest import git_commit, local_server, run


def houses(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 220, rows)
    rooms = np.clip(np.round(area / 35 + rng.normal(0, 0.7, rows)), 1, 8)
    district = rng.choice(["north", "south", "east", "west"], rows)
    sold = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365, rows), "D")
    bonus = pd.Series(district).map({"north": 1.3, "south": 0.9, "east": 1.0, "west": 1.1})
    price = (
        2500
        * area
        * bonus.to_numpy()
        * (1 + 0.04 * (sold.year - 2018))
        * rng.lognormal(0, 0.08, rows)
    )
    frame = pd.DataFrame(
        {
            "listing_id": np.arange(50_000, 50_000 + rows),
            "area": area.round(1),
            "rooms": rooms,
            "district": district,
            "sold_on": sold.strftime("%Y-%m-%d"),
            "notes": [f"listing {i}: {w}" for i, w in enumerate(rng.choice(["nice", "old"], rows))],
            "price": price.round(-2),
        }
    )
    for column, share in (("area", 0.04), ("rooms", 0.06), ("district", 0.03)):
        frame.loc[rng.random(rows) < share, column] = None
    frame.loc[rng.random(rows) < 0.08, "price"] = None  # listings not sold yet
    return frame


def loans(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, rows)
    debt = income * rng.uniform(0.0, 0.8, rows)
    employment = rng.choice(["salaried", "self-employed", "none"], rows, p=[0.6, 0.3, 0.1])
    score = np.log(income) - 4 * debt / income + (employment == "salaried") * 0.5
    approved = score + rng.normal(0, 0.3, rows) > np.median(score)
    return pd.DataFrame(
        {
            "income": income.round(0),
            "debt": debt.round(0),
            "employment": employment,
            "outcome": np.where(approved, "approved", "declined"),
        }
    )


def penguins(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.choice(["adelie", "chinstrap", "gentoo"], rows)
    centre = pd.Series(species).map({"adelie": 38.0, "chinstrap": 48.0, "gentoo": 47.0})
    mass = pd.Series(species).map({"adelie": 3700.0, "chinstrap": 3730.0, "gentoo": 5070.0})
    island = np.where(species == "gentoo", "biscoe", rng.choice(["dream", "torgersen"], rows))
    frame = pd.DataFrame(
        {
            "bill_length": (centre.to_numpy() + rng.normal(0, 2.5, rows)).round(1),
            "body_mass": (mass.to_numpy() + rng.normal(0, 300, rows)).round(0),
            "island": island,
            "species": species,
        }
    )
    frame.loc[rng.random(rows) < 0.1, "island"] = None
    return frame


TABLES = {
    "houses": (houses, "price", "regression", ("r2", 0.6)),
    "loans": (loans, "outcome", "binary", ("roc_auc", 0.8)),
    "penguins": (penguins, "species", "multiclass", ("accuracy", 0.8)),
}


@pytest.fixture(scope="module", params=list(TABLES))
def adapted(request, tmp_path_factory):
    """The repository adapted by ``init`` alone, after ``dvc repro``; and its table."""
    name = request.param
    make, target, _, _ = TABLES[name]
    repo = copy_repository(tmp_path_factory.mktemp(name))
    (repo / "dvc.lock").unlink()
    git_commit(repo, "copy")  # a clone, as a user starts: init's dvc add needs git
    table = make(2000, seed=1)
    source = repo / "data" / "external" / f"{name}.csv"
    source.parent.mkdir(parents=True)
    table.to_csv(source, index=False)
    started = time.perf_counter()
    init = ["python", "-m", "mlpipeline", "init", "--source", f"data/external/{name}.csv"]
    done = run([*init, "--target", target], repo)
    seconds = {"init": time.perf_counter() - started}
    git_commit(repo, f"init on {name}")
    started = time.perf_counter()
    run(["dvc", "repro"], repo)
    seconds["repro"] = time.perf_counter() - started
    print(f"\n{name}: init {seconds['init']:.1f} s, dvc repro {seconds['repro']:.1f} s")
    print(done.stderr[-1500:])
    return name, repo, table


def test_init_infers_the_task_and_the_roles(adapted):
    name, repo, _ = adapted
    params = json.loads(run(["dvc", "params", "diff", "--all", "--json"], repo).stdout or "{}")
    assert params  # dvc reads the written params
    import yaml

    dataset = yaml.safe_load((repo / "params.yaml").read_text())["dataset"]
    assert dataset["task"] == TABLES[name][2]
    if name == "houses":
        assert dataset["dates"] == ["sold_on"] and dataset["categorical"] == ["district"]
        assert set(dataset["drop"]) == {"listing_id", "notes"}


def test_the_metrics_are_sane(adapted):
    name, repo, _ = adapted
    metric, floor = TABLES[name][3]
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    print(name, metrics["test"])
    assert metrics["test"][metric] > floor


def test_monitor_finds_no_drift_on_a_sample_of_the_table(adapted, tmp_path):
    _, repo, table = adapted
    table.sample(600, random_state=7).to_csv(tmp_path / "sample.csv", index=False)
    done = run(
        ["python", "-m", "mlpipeline", "monitor", str(tmp_path / "sample.csv")], repo, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_predict_scores_whole_raw_rows(adapted, tmp_path):
    _, repo, table = adapted
    rows = table.sample(300, random_state=3)  # the target and the dropped columns included
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "scored.parquet"
    predict = ["python", "-m", "mlpipeline", "predict", "--input", str(tmp_path / "rows.csv")]
    done = run([*predict, "--output", str(out), "--model", "models/pyfunc"], repo, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = pd.read_parquet(out)
    assert len(scored) == 300 and scored["prediction"].notna().all()
    assert list(scored.columns[: table.shape[1]]) == list(table.columns)


def test_the_served_model_answers_whole_rows_with_missing_values(adapted):
    _, repo, table = adapted
    rows = table.head(20).astype(object).where(table.head(20).notna(), None)
    body = json.dumps({"dataframe_split": {"columns": list(rows), "data": rows.values.tolist()}})
    command = ["mlflow", "models", "serve", "-m", "models/pyfunc", "--env-manager", "local"]
    with local_server([*command, "-h", "127.0.0.1", "-p", "{port}"], "/ping", repo) as url:
        request = urllib.request.Request(
            f"{url}/invocations", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = json.loads(answer.read())["predictions"]
    assert len(predictions) == 20


def test_the_unit_tests_pass_on_the_adapted_repository(adapted):
    _, repo, _ = adapted
    done = run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"], repo, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:]
