"""What people look at, opened in a real browser (headless Chromium, network cut off): the
validation reports, the model card as HTML with its plots, one plot PNG, DVC's plots page made
by ``python -m mlpipeline plots``, and MLflow's UI on the pipeline's store. Each of our pages
must load with no console error, exception or failed load; a report must show its failed
expectations first.

Screenshots go to the test's temporary folder, or to ``$BROWSER_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.browser import Browser, chromium
from tests.integration.conftest import local_server, run

IMAGES_LOADED = (
    "document.images.length > 0 && [...document.images].every(i => i.complete)"
    " && [...document.images].every(i => i.naturalWidth > 0)"
)


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's where apt is there)")
    with Browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def rendered(pipeline, tmp_path_factory) -> Path:
    """``python -m mlpipeline plots`` on the pipeline's results."""
    out = tmp_path_factory.mktemp("rendered") / "dvc_plots"
    run(["python", "-m", "mlpipeline", "plots", "--out", str(out)], pipeline)
    return out


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_validation_report_shows_its_failures_first(browser, pipeline, shots):
    report = pipeline / "reports" / "validation" / "raw.html"
    rows = (
        "[...document.querySelectorAll('tbody tr')].map(r => [r.className, r.cells[0].innerText])"
    )
    page = browser.visit(report.as_uri(), rows, shots / "validation_report.png")
    assert page.errors == [] and page.warnings == []
    counts = json.loads((pipeline / "reports" / "validation" / "raw_metrics.json").read_text())
    failed = counts["critical_failures"] + counts["warnings"]
    assert failed > 0  # the default data's known defects: warnings
    assert len(page.ready) == counts["evaluated"]
    first, rest = page.ready[:failed], page.ready[failed:]
    assert {status for status, _ in first} <= {"fail", "warn"}  # failures first...
    assert {result for _, result in first} <= {"FAILED", "failed (warning)"}  # ...in words
    assert {status for status, _ in rest} == {"pass"} and {r for _, r in rest} == {"passed"}


def test_a_critical_failure_is_shown_first_and_in_words(browser, pipeline, shots, tmp_path):
    """A report with a critical failure (values outside the suite's set) and warnings."""
    import pandas as pd

    from mlpipeline.quality.validation import render_html, validate

    frame = pd.read_parquet(pipeline / "data" / "raw" / "data.parquet").head(3000)
    frame.loc[[7, 11], "cut"] = "<Martian>"
    report = validate(frame, REPO / "expectations" / "raw.json", 5)
    (tmp_path / "bad.html").write_text(render_html(report, "Validation: a bad batch"))
    cells = "[...document.querySelectorAll('tbody tr')].map(r => r.cells[0].innerText)"
    page = browser.visit((tmp_path / "bad.html").as_uri(), cells, shots / "bad_report.png")
    assert page.errors == [] and page.ready[0] == "FAILED"
    assert "<Martian>" in page.text  # the bad values, as examples
    failed = [r for r in page.ready if r != "passed"]
    assert page.ready[: len(failed)] == failed and "FAILED" in failed


def test_the_model_card_shows_its_plots(browser, rendered, shots):
    loaded = f"({IMAGES_LOADED}) && document.images.length"
    page = browser.visit((rendered / "model_card.html").as_uri(), loaded, shots / "model_card.png")
    assert page.ready == 4 and page.errors == [], page.errors  # a missing image is an error
    assert "Model card: diamonds-price" in page.text and "Known limits" in page.text
    assert sorted(p.name for p in (rendered / "plots").glob("*.png")) == [
        "importance.png",
        "predictions.png",
        "search.png",
        "slices.png",
    ]


def test_a_plot_png_opens(browser, rendered, shots):
    image = rendered / "plots" / "predictions.png"
    page = browser.visit(image.as_uri(), IMAGES_LOADED, shots / "plot_png.png")
    assert page.ready and page.errors == []
    assert image.read_bytes().startswith(b"\x89PNG")


def test_dvc_plots_page_renders_offline(browser, rendered, shots):
    """DVC's own page, with the Vega libraries inlined: every plot drawn with no network.
    (Vega-Lite's warnings about DVC's templates are allowed; errors are not.)"""
    drawn = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
    page = browser.visit(
        (rendered / "index.html").as_uri(), f"{drawn} >= 3 && {drawn}", shots / "dvc_plots.png"
    )
    assert page.ready >= 3 and page.errors == [], page.errors


def test_dvcs_own_plots_show_renders_offline(browser, pipeline, shots, tmp_path):
    """Plain ``dvc plots show``: ``.dvc/config`` points DVC at the committed offline template
    (``plots.html_template``), so DVC's own command draws every plot with no network too."""
    run(["dvc", "plots", "show", "--out", str(tmp_path / "plain")], pipeline)
    page_file = tmp_path / "plain" / "index.html"
    assert "cdn.jsdelivr" not in page_file.read_text()
    drawn = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
    page = browser.visit(page_file.as_uri(), f"{drawn} >= 3 && {drawn}", shots / "plain.png")
    assert page.ready >= 3 and page.errors == [], page.errors


def test_the_mlflow_ui_shows_the_runs_datasets_and_model(browser, pipeline, shots):
    """MLflow's own pages on the pipeline's store: the README's link opens the training runs;
    the train run lists its datasets and the model its test metrics are linked to; the
    registered version's description is the card with its plots (served from the run)."""
    import mlflow

    link = "/#/experiments/1/runs?workflowType=machine_learning"
    assert link in (REPO / "README.md").read_text()
    client = mlflow.MlflowClient(f"sqlite:///{pipeline / 'mlflow.db'}")
    version = client.get_model_version_by_alias("diamonds-price", "challenger")
    train = version.tags["train.run_id"]
    command = ["mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db", "-p", "{port}"]
    text = "document.body.innerText"
    with local_server(command, "/health", pipeline) as url:
        runs = browser.visit(
            url + link, f"{text}.includes('pipeline 2')", shots / "ui_runs.png", 180
        )
        assert runs.ready and "Model training" in runs.text and "Runs" in runs.text
        run_page = f"{url}/#/experiments/1/runs/{train}"
        ready = f"{text}.includes('Datasets') && {text}.includes('test.rmse')"
        ready += f" && {text}.includes('diamonds-price')"  # the registered model comes last
        shown = browser.visit(run_page, ready, shots / "ui_train_run.png", 180)
        assert shown.ready and "train (" in shown.text and "Training" in shown.text
        assert "diamonds-price" in shown.text  # the registered model, through the LoggedModel
        card = f"{url}/#/models/diamonds-price/versions/{version.version}"
        card_images = "[...document.images].filter(i => i.src.includes('get-artifact'))"
        loaded = f"{card_images}.length >= 3 && {card_images}.every(i => i.naturalWidth > 0)"
        images = browser.visit(card, loaded, shots / "ui_version.png", 180)
        assert images.ready and "Model card: diamonds-price" in images.text
