"""The bad-input corpus: each broken source goes through ``dvc repro`` and must stop at ingest
or validate with a non-zero exit and a message naming the problem, with no traceback, nothing
downstream run, and the last good outputs untouched (and recoverable with ``dvc checkout``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import restore, run, set_params, tree_digest

pytestmark = pytest.mark.integration

Writer = Callable[[pd.DataFrame, Path], None]


def _csv(change: Callable[[pd.DataFrame], pd.DataFrame], **options) -> Writer:
    return lambda raw, path: change(raw.copy()).to_csv(path, index=False, **options)


def _bytes(make: Callable[[pd.DataFrame], bytes]) -> Writer:
    return lambda raw, path: path.write_bytes(make(raw))


def _every(n: int, frame: pd.DataFrame) -> np.ndarray:
    return np.arange(len(frame)) % n == 0


def _set(column: str, value, every: int = 1) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[_every(every, frame), column] = value
        return frame

    return change


def _truncated(raw: pd.DataFrame) -> bytes:
    text = raw.to_csv(index=False).encode()
    return text[: text.rstrip().rfind(b",") - 3]  # cut the last line inside a field


# (case, writer, stage that must stop, fragments the message must contain)
CORPUS = [
    ("missing_column", _csv(lambda f: f.drop(columns=["depth"])), "validate", ["missing: depth"]),
    ("extra_column", _csv(lambda f: f.assign(shape="round")), "validate", ["unexpected: shape"]),
    (
        "renamed_column",
        _csv(lambda f: f.rename(columns={"table": "tbl"})),
        "validate",
        ["missing: table", "unexpected: tbl"],
    ),
    ("reordered_columns", _csv(lambda f: f[f.columns[::-1]]), "validate", ["order differs"]),
    (
        "numbers_as_text",
        _csv(lambda f: f.assign(price="$" + f["price"].astype(str))),
        "validate",
        ["price", "type"],
    ),
    ("text_in_numeric", _csv(_set("carat", "heavy", every=100)), "validate", ["carat"]),
    ("all_null_column", _csv(_set("depth", np.nan)), "validate", ["depth", "not_be_null"]),
    (
        "nan_and_inf",
        _csv(lambda f: _set("carat", np.inf, 50)(_set("table", np.nan, 70)(f))),
        "validate",
        ["carat", "table"],
    ),
    (
        "negative_and_zero_sizes",
        _csv(lambda f: _set("z", 0.0, 20)(_set("x", -1.0, 30)(f))),
        "validate",
        ["x", "z", "bad rows"],
    ),
    ("absurdly_large", _csv(_set("price", 10**9, every=1000)), "validate", ["price", "1000000000"]),
    ("unseen_category", _csv(_set("cut", "Martian", every=500)), "validate", ["cut", "Martian"]),
    ("empty_file", _bytes(lambda raw: b""), "ingest", ["cannot read", "No columns"]),
    (
        "header_only",
        _bytes(lambda raw: ",".join(raw.columns).encode() + b"\n"),
        "ingest",
        ["has no rows"],
    ),
    ("wrong_delimiter", _csv(lambda f: f, sep=";"), "validate", ["missing: carat"]),
    (
        "not_utf8",
        _bytes(
            lambda raw: (
                _set("cut", "Idéal", every=3)(raw.copy()).to_csv(index=False).encode("latin-1")
            )
        ),
        "ingest",
        ["cannot read", "utf-8"],
    ),
    ("truncated_last_line", _bytes(_truncated), "validate", ["not_be_null", "row 53939"]),
    (
        "binary_garbage",
        _bytes(lambda raw: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
        "ingest",
        ["cannot read"],
    ),
    (
        "many_duplicates",
        _csv(lambda f: pd.concat([f, f.head(3000)], ignore_index=True)),
        "validate",
        ["compound_columns_to_be_unique", "bad rows"],
    ),
    (
        "shifted_distribution",
        _csv(lambda f: f.assign(carat=f["carat"] * 1.5)),
        "validate",
        ["carat", "kl_divergence"],
    ),
]


@pytest.fixture(scope="module")
def raw(pipeline) -> pd.DataFrame:
    return pd.read_parquet(pipeline / "data/raw/data.parquet")


@pytest.mark.parametrize(
    ("case", "writer", "stage", "fragments"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_bad_input_stops_the_pipeline(pipeline, raw, tmp_path, case, writer, stage, fragments):
    source = tmp_path / f"{case}.csv"
    writer(raw, source)
    models_before = tree_digest(pipeline / "models")
    set_params(pipeline, lambda p: p["dataset"].update(source=str(source)))
    try:
        done = run(["dvc", "repro"], pipeline, check=False)
    finally:
        restore(pipeline)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"failed to reproduce '{stage}'" in output, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert "Running stage 'featurize'" not in output
    assert tree_digest(pipeline / "models") == models_before
    assert not [p for p in (pipeline / "data").rglob("*.tmp")], "a half-written output was left"


def test_last_good_outputs_are_recoverable(pipeline, raw, tmp_path):
    source = tmp_path / "unseen.csv"
    _csv(_set("cut", "Martian", every=500))(raw, source)
    set_params(pipeline, lambda p: p["dataset"].update(source=str(source)))
    assert run(["dvc", "repro"], pipeline, check=False).returncode != 0
    assert not raw.equals(pd.read_parquet(pipeline / "data/raw/data.parquet"))  # ingest ran
    restore(pipeline)
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    restored = pd.read_parquet(pipeline / "data/raw/data.parquet")
    pd.testing.assert_frame_equal(restored, raw)
