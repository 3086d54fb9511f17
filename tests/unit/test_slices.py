"""The test metric by segment: every value of every categorical feature, ranges of the most
important numeric ones, small segments marked, the worst one named."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from mlpipeline.core.config import TrainParams
from mlpipeline.model.slices import MISSING, slice_report, slices_frame
from tests.unit.test_search import train_params


def _with(task: str, **fields) -> TrainParams:
    return TrainParams.model_validate({**train_params(task).model_dump(), **fields})


def _table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shop = pd.Series(rng.choice(["north side", "south", "west.1"], rows, p=[0.5, 0.45, 0.05]))
    shop[rng.random(rows) < 0.05] = None
    return pd.DataFrame(
        {
            "shop": shop.astype("category"),
            "size": rng.normal(size=rows),
            "rating": rng.integers(1, 4, rows),  # three distinct numbers: sliced by value
            "noise": rng.normal(size=rows),
        }
    )


IMPORTANCE = pd.DataFrame({"feature": ["size", "noise", "rating", "shop"], "gain": [4, 3, 2, 1]})


def test_every_category_value_missing_values_and_ranges_of_the_top_numeric_features():
    frame = _table()
    actual = np.zeros(len(frame))
    south = (frame["shop"].astype("string") == "south").fillna(False).to_numpy()
    scores = np.where(south, 3.0, 1.0)  # south is the worst
    train = _with("regression", target_transform="none", slices={"top_numeric": 1, "bins": 4})
    report = slice_report(train, frame, actual, scores, IMPORTANCE)
    segments = report["segments"]
    assert list(segments["shop"]) == ["north side", "south", "west.1", MISSING]
    assert list(segments["rating"]) == ["1", "2", "3"]
    assert list(segments["size"]) == ["q1", "q2", "q3", "q4"] and "noise" not in segments
    assert sum(e["rows"] for e in segments["size"].values()) == len(frame)
    assert sum(e["rows"] for e in segments["shop"].values()) == len(frame)
    assert math.isclose(segments["shop"]["south"]["rmse"], 3.0)
    assert math.isclose(report["overall"]["rmse"], math.sqrt(np.mean(scores**2)))
    assert report["worst"]["segment"] == "shop = south" and report["worst"]["ratio"] > 1
    small = segments["shop"]["west.1"]
    assert small["small"] is (small["rows"] < 30)
    plot = slices_frame(report)
    assert len(plot) == sum(len(v) for v in segments.values())
    assert plot["segment"].str.contains(r"\(n=").all()
    assert plot["segment"].iloc[0].startswith("shop = north side (n=")


def test_a_small_segment_is_shown_but_never_the_worst():
    frame = _table()
    rare = (frame["shop"].astype("string") == "west.1").fillna(False).to_numpy()
    scores = np.where(rare, 100.0, 1.0)
    train = _with("regression", target_transform="none", slices={"min_rows": 50})
    report = slice_report(train, frame, np.zeros(len(frame)), scores, IMPORTANCE)
    assert report["segments"]["shop"]["west.1"]["small"] is True
    assert "west.1" not in report["worst"]["segment"]


def test_classification_segments_have_the_log_loss_and_accuracy_of_their_rows():
    frame = _table()
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, len(frame))
    probabilities = rng.dirichlet(np.ones(3), len(frame))
    report = slice_report(_with("multiclass"), frame, labels, probabilities, IMPORTANCE)
    assert report["metric"] == "log_loss"
    rows = (frame["shop"].astype("string") == "south").fillna(False).to_numpy()
    south = report["segments"]["shop"]["south"]
    expected = log_loss(labels[rows], probabilities[rows], labels=[0, 1, 2])
    assert math.isclose(south["log_loss"], expected, rel_tol=1e-9)
    assert math.isclose(south["accuracy"], np.mean(probabilities[rows].argmax(1) == labels[rows]))


def test_a_log_target_is_scored_on_its_own_scale():
    frame = _table(100)
    actual = np.full(len(frame), 9.0)
    report = slice_report(_with("regression"), frame, actual, np.log1p(actual), IMPORTANCE)
    assert report["overall"]["rmse"] < 1e-9  # log1p target: exact predictions, no error
