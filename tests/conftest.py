"""Shared fixtures (tiny in-memory frames, a throwaway MLflow store so no test writes to the
repository's own ``mlflow.db``) and the test layers: every test under ``tests/integration``
is marked ``integration`` here, so none can forget the marker. The fast layer runs on
pytest-xdist workers, one per core (``-n auto`` in pyproject.toml); a run that includes the
integration tests runs in this process (see ``pytest_xdist_auto_num_workers``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core for the fast layer (``-m "not integration"``), none
    otherwise. The integration tests share session and module fixtures in order (one pipeline,
    one registry growing version by version) and each ``dvc repro`` uses every core, so beside
    unit-test workers they ran out of order and several times slower (a 900 s timeout)."""
    if "not integration" in (config.option.markexpr or ""):
        return os.cpu_count() or 1
    return 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests by folder: ``pytest -m "not integration"`` runs no pipeline."""
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def raw_frame() -> pd.DataFrame:
    """Six diamonds: one duplicate, one with a zero dimension."""
    rows = [
        (0.23, "Ideal", "E", "SI2", 61.5, 55.0, 326, 3.95, 3.98, 2.43),
        (0.21, "Premium", "E", "SI1", 59.8, 61.0, 326, 3.89, 3.84, 2.31),
        (0.31, "Good", "J", "SI2", 63.3, 58.0, 335, 4.34, 4.35, 2.75),
        (1.01, "Ideal", "G", "VS1", 62.0, 56.0, 6500, 6.40, 6.43, 3.98),
        (1.01, "Ideal", "G", "VS1", 62.0, 56.0, 6500, 6.40, 6.43, 3.98),
        (0.70, "Very Good", "D", "VVS2", 62.1, 57.0, 3300, 0.0, 5.70, 3.52),
    ]
    columns = ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture
def synthetic_regression() -> tuple[pd.DataFrame, np.ndarray]:
    """A learnable table: price grows with carat, with a categorical effect and noise."""
    rng = np.random.default_rng(0)
    n = 400
    carat = rng.uniform(0.2, 2.5, n)
    cut = rng.choice(["Fair", "Good", "Ideal"], n)
    bonus = pd.Series(cut).map({"Fair": 0.8, "Good": 1.0, "Ideal": 1.2}).to_numpy()
    price = 4000 * carat**1.7 * bonus * rng.lognormal(0, 0.05, n)
    frame = pd.DataFrame({"carat": carat, "cut": pd.Categorical(cut), "noise": rng.normal(size=n)})
    return frame, price


@pytest.fixture
def synthetic_classes() -> tuple[pd.DataFrame, np.ndarray]:
    """A learnable three-class table: the class follows carat bands, shifted by cut."""
    rng = np.random.default_rng(1)
    n = 600
    carat = rng.uniform(0.2, 2.5, n)
    cut = rng.choice(["Fair", "Good", "Ideal"], n)
    shift = pd.Series(cut).map({"Fair": -0.2, "Good": 0.0, "Ideal": 0.2}).to_numpy()
    size = np.digitize(carat + shift + rng.normal(0, 0.1, n), [0.9, 1.6])
    frame = pd.DataFrame({"carat": carat, "cut": pd.Categorical(cut), "noise": rng.normal(size=n)})
    return frame, size


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new SQLite tracking store, created once (MLflow's migrations take about a second)."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> str:
    """Point MLflow at a SQLite file of its own in the test's temporary folder."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    monkeypatch.setenv("PIPELINE_EXECUTION_ID", f"test-{tmp_path.name}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri
