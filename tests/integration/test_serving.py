"""The champion served by the real MLflow model server: formats, bad requests, recovery."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pandas as pd
import pytest

from tests.integration.conftest import BIN, local_server

pytestmark = pytest.mark.integration

COLUMNS = ["carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z"]
ROWS = [
    [0.3, "Ideal", "E", "VS1", 61.5, 55, 4.3, 4.31, 2.65],
    [1.5, "Premium", "G", "SI1", 62.0, 58, 7.3, 7.25, 4.5],
]
JSON = "application/json"


@pytest.fixture(scope="module")
def champion_server(pipeline):
    """``mlflow models serve`` of the champion, on the repository's tracking store."""
    command = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/diamonds-price@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}"]
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{pipeline / 'mlflow.db'}"}
    with local_server(command, "/ping", pipeline, store) as url:
        yield url


def post(url: str, body: bytes | str, content_type: str = JSON) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(
        f"{url}/invocations", data=data, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def split_body(columns=COLUMNS, rows=ROWS) -> str:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}})


def predictions(url: str) -> list[float]:
    status, text = post(url, split_body())
    assert status == 200, text
    return json.loads(text)["predictions"]


def test_ping_and_version(champion_server):
    with urllib.request.urlopen(f"{champion_server}/ping", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{champion_server}/version", timeout=10) as response:
        assert response.read().decode().strip().startswith("3.")


def test_split_records_and_csv_bodies_give_the_same_predictions(champion_server):
    expected = predictions(champion_server)
    assert 200 < expected[0] < expected[1] < 30000
    records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
    status, text = post(champion_server, json.dumps({"dataframe_records": records}))
    assert status == 200 and json.loads(text)["predictions"] == expected
    csv = pd.DataFrame(ROWS, columns=COLUMNS).to_csv(index=False)
    status, text = post(champion_server, csv, "text/csv")
    assert status == 200 and json.loads(text)["predictions"] == pytest.approx(expected)


def _with(column: str, value) -> list[list]:
    rows = [list(row) for row in ROWS]
    rows[1][COLUMNS.index(column)] = value
    return rows


BAD_REQUESTS = {
    "missing column": (
        split_body(COLUMNS[:-1], [r[:-1] for r in ROWS]),
        "missing column(s): ['z']",
    ),
    "unknown column": (  # the target or a dropped column would be accepted and ignored
        split_body([*COLUMNS, "colour"], [[*r, "E"] for r in ROWS]),
        "unexpected column(s): ['colour']",
    ),
    "wrong type": (split_body(rows=_with("carat", "heavy")), "column 'carat' must be numeric"),
    "unseen category": (
        split_body(rows=_with("cut", "Astounding")),
        "column 'cut' has value(s) the model was not trained on: 'Astounding' (row 1)",
    ),
    "null": (split_body(rows=_with("x", None)), "column 'x' has missing values (rows [1])"),
    "NaN": (split_body(rows=_with("depth", float("nan"))), "column 'depth' has missing values"),
    "no rows": (split_body(rows=[]), "the request holds no rows"),
    "large batch": (split_body(rows=ROWS * 2501), "holds 5002 rows, more than 5000: split it"),
    "empty body": ("", "Ensure that input is a valid JSON formatted string"),
    "malformed JSON": ('{"dataframe_split": {"columns": ["carat"', "Expecting ',' delimiter"),
    "ragged rows": (  # the short row is padded with missing values, which the model refuses
        split_body(rows=[ROWS[0], ROWS[1][:3]]),
        "column 'clarity' has missing values (rows [1])",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_gets_400_with_the_reason_and_the_server_goes_on(champion_server, case):
    body, message = BAD_REQUESTS[case]
    status, text = post(champion_server, body)
    assert status == 400, text
    reply = json.loads(text)
    assert reply["error_code"] in {"BAD_REQUEST", "INVALID_PARAMETER_VALUE"}
    assert message in reply["message"]
    assert "Traceback" not in reply["message"]
    assert len(predictions(champion_server)) == 2  # the next request is answered


def test_wrong_content_type_is_refused(champion_server):
    status, _ = post(champion_server, split_body(), "text/plain")
    assert status == 415
    assert len(predictions(champion_server)) == 2


def test_whole_rows_with_the_target_are_answered_and_the_target_ignored(champion_server):
    body = split_body([*COLUMNS, "price"], [[*r, 500] for r in ROWS])
    status, text = post(champion_server, body)
    assert status == 200 and json.loads(text)["predictions"] == pytest.approx(
        predictions(champion_server)
    )


def explain_body(explain) -> str:
    split = {"columns": COLUMNS, "data": ROWS}
    return json.dumps({"dataframe_split": split, "params": {"explain": explain}})


def test_explain_returns_contributions_that_add_up_to_the_raw_score(champion_server):
    status, text = post(champion_server, explain_body(True))
    assert status == 200, text
    records = json.loads(text)["predictions"]
    assert [r["prediction"] for r in records] == pytest.approx(predictions(champion_server))
    for record in records:
        parts = [v for k, v in record.items() if k.startswith("contribution.")]
        assert len(parts) >= 2 and "contribution.base" in record  # the model's features + base
        assert sum(parts) == pytest.approx(record["raw_score"], abs=1e-6)
    status, text = post(champion_server, explain_body(False))  # false: the plain answer
    assert status == 200 and json.loads(text)["predictions"] == predictions(champion_server)


@pytest.mark.parametrize("bad", ["yes", 1, None, [True]])
def test_a_non_boolean_explain_gets_400_and_the_server_goes_on(champion_server, bad):
    status, text = post(champion_server, explain_body(bad))
    assert status == 400, text
    assert "explain" in json.loads(text)["message"]
    assert len(predictions(champion_server)) == 2
