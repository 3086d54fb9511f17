"""A user's classification table through the whole pipeline, by params changes only.

The steps are docs/your-data.md: point params at the file, build the two
suites from it with ``build-suite``, ``dvc repro``. No file under ``stages/`` changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import _copy_repository, git_commit, run, set_params

CLASSES = {"binary": ["declined", "approved"], "multiclass": ["low", "medium", "high"]}


def loans(rows: int, classes: list[str], seed: int = 0) -> pd.DataFrame:
    """Loan applications: the outcome follows income against debt, shifted by employment."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, rows).round(0)
    debt = (income * rng.uniform(0.05, 0.9, rows)).round(0)
    employment = rng.choice(["salaried", "self-employed", "contract"], rows, p=[0.6, 0.25, 0.15])
    years = rng.integers(0, 40, rows)
    boost = pd.Series(employment).map({"salaried": 0.4, "self-employed": 0.0, "contract": -0.4})
    score = 3 * (0.5 - debt / income) + boost.to_numpy() + 0.02 * years + rng.normal(0, 0.4, rows)
    edges = np.quantile(score, np.linspace(0, 1, len(classes) + 1)[1:-1])
    outcome = np.asarray(classes)[np.digitize(score, edges)]
    return pd.DataFrame(
        {
            "income": income,
            "debt": debt,
            "employment": employment,
            "years": years,
            "outcome": outcome,
        }
    )


def use_loans(task: str):
    def edit(p: dict) -> None:
        p["dataset"].update(
            source="data/external/loans.csv",
            target="outcome",
            task=task,
            categorical=["employment"],
        )
        p["validate"].update(
            suite="expectations/loans.json", features_suite="expectations/loans_features.json"
        )
        p["validate"]["build"]["positive"] = []
        p["featurize"].update(
            row_filters=["income > 0"],
            derived={"debt_ratio": "debt / income"},
            stratify=True,
        )
        p["train"].update(
            positive_class="approved" if task == "binary" else None,
            target_transform="none",
            feature_sets={
                "base": ["income", "debt", "employment", "years"],
                "ratio": ["income", "debt", "employment", "years", "debt_ratio"],
            },
        )
        p["train"]["search"].update(n_calls=4, n_initial_points=2, max_rounds=200)
        p["train"]["search"]["space"]["feature_set"]["categories"] = ["base", "ratio"]
        p["package"]["model_name"] = f"loans-{task}"
        p["package"]["gate"]["thresholds"] = {"roc_auc": 0.8, "accuracy": 0.6}
        p["package"]["unseen_categories"] = "missing"

    return edit


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def classified(request, tmp_path_factory):
    task = request.param
    repo = _copy_repository(tmp_path_factory.mktemp(f"loans-{task}"))
    (repo / "dvc.lock").unlink(missing_ok=True)
    (repo / "data" / "external").mkdir(parents=True, exist_ok=True)
    loans(3000, CLASSES[task]).to_csv(repo / "data" / "external" / "loans.csv", index=False)
    set_params(repo, use_loans(task))
    git_commit(repo, "loans")
    build = ["python", "-m", "mlpipeline", "build-suite"]
    run(["dvc", "repro", "ingest"], repo)
    run([*build, "--reference", "data/raw/data.parquet", "--out", "expectations/loans.json"], repo)
    features = ["--featurize", "--reference", "data/raw/data.parquet"]
    run([*build, *features, "--out", "expectations/loans_features.json"], repo)
    run(["dvc", "repro"], repo)
    return task, repo


@pytest.mark.integration
def test_classification_metrics_beat_chance(classified):
    task, repo = classified
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"log_loss", "roc_auc", "accuracy", "f1"}
    chance = 1 / len(CLASSES[task])
    assert test["accuracy"] > chance + 0.25 and test["roc_auc"] > 0.85
    assert test["log_loss"] < np.log(len(CLASSES[task])) * 0.8  # well below a uniform guess
    search_metric = "binary_logloss" if task == "binary" else "multi_logloss"
    assert metrics["cv"][f"search_{search_metric}"] > 0 and metrics["trials"] == 4


@pytest.mark.integration
def test_classification_plots_are_written_and_drawn(classified):
    task, repo = classified
    plots = repo / "reports" / "plots"
    confusion = pd.read_csv(plots / "confusion.csv")
    counts = json.loads((repo / "reports" / "featurize.json").read_text())
    assert set(confusion["actual"]) == set(CLASSES[task]) and len(confusion) == counts["test_rows"]
    roc = pd.read_csv(plots / "roc.csv")
    assert roc[["fpr", "tpr"]].iloc[-1].tolist() == [1.0, 1.0]
    assert {"recall", "precision"} <= set(pd.read_csv(plots / "precision_recall.csv"))
    shown = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)
    drawn = {name for name, data in shown["data"].items() if data}
    assert {"reports/plots/confusion.csv", "reports/plots/roc.csv"} <= drawn
    assert "reports/plots/precision_recall.csv" in drawn
    pngs = {f"plots/{Path(name).stem}.png" for name in drawn}  # each drawn plot, as PNG
    assert pngs <= _train_artifacts(repo, "plots")


def _train_artifacts(repo, folder: str) -> set[str]:
    """The artifacts under ``folder`` of the repository's latest train run."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dvc-pipeline")
    train = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`pipeline.stage` = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    return {a.path for a in client.list_artifacts(train.info.run_id, folder)}


@pytest.mark.integration
def test_packaged_classifier_returns_classes_and_probabilities(classified):
    task, repo = classified
    code = (
        "import sys, mlflow, pandas as pd\n"
        "rows = pd.read_csv('data/external/loans.csv').drop(columns=['outcome']).head(50)\n"
        "rows.loc[0, 'employment'] = 'retired'  # unseen category: treated as missing\n"
        "out = mlflow.pyfunc.load_model('models/pyfunc').predict(rows)\n"
        "out.to_json(sys.stdout, orient='split')\n"
    )
    out = json.loads(run(["python", "-c", code], repo).stdout)
    frame = pd.DataFrame(out["data"], columns=out["columns"])
    # sorted classes; a binary task's positive class (approved) last
    classes = CLASSES[task] if task == "binary" else sorted(CLASSES[task])
    assert list(frame.columns) == ["prediction", *(f"probability_{c}" for c in classes)]
    assert set(frame["prediction"]) <= set(classes) and len(frame) == 50
    probabilities = frame.drop(columns="prediction").to_numpy(float)
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert (frame["prediction"] == np.asarray(classes)[probabilities.argmax(axis=1)]).all()


@pytest.mark.integration
def test_monitor_compares_predicted_class_frequencies(classified, tmp_path):
    task, repo = classified
    batch = loans(1500, CLASSES[task], seed=5)
    batch.to_csv(tmp_path / "same.csv", index=False)
    monitor = ["python", "-m", "mlpipeline", "monitor"]
    done = run([*monitor, str(tmp_path / "same.csv")], repo, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((repo / "reports" / "monitor" / "same.json").read_text())
    assert not report["predictions"]["drifted"], report["predictions"]
    rich = batch[batch["debt"] < 0.2 * batch["income"]]  # applicants who all look alike
    rich.to_csv(tmp_path / "rich.csv", index=False)
    done = run([*monitor, str(tmp_path / "rich.csv")], repo, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads((repo / "reports" / "monitor" / "rich.json").read_text())
    assert report["predictions"]["drifted"]
