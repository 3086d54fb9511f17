"""``python -m mlpipeline predict --input rows.csv --output scored.parquet``: batch scoring.

The input (CSV or Parquet: a path, URL or ``package://``, read with ``dataset.read_options``)
is first checked against the raw suite, without its row-count checks, as ``monitor`` does; the
target and the dropped columns (``dataset.drop``) may be there or not: they are kept in the
output and not used. A batch that breaks a critical check other
than a distribution check (a missing column, a wrong type, a forbidden value) is refused with
the table of findings and exit code 2; drifted distributions are reported and scoring goes on
(``python -m mlpipeline monitor`` writes the drift report). The rows are then scored with the
registered champion — or ``--version N``, or any MLflow model URI given with ``--model`` — in
chunks of ``package.max_batch_rows``, and written atomically to Parquet: the input columns plus
``prediction`` (and, for classification, one ``probability_<class>`` column per class).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.core.config import load_params
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_parquet
from mlpipeline.data.names import CHAMPION
from mlpipeline.quality.monitoring import (
    INVALID,
    check_batch,
    optional_columns,
    read_batch,
    verdict,
)
from mlpipeline.quality.validation import findings, format_table
from mlpipeline.track.runs import connect, repo_root

log = logging.getLogger(__name__)


def model_uri(name: str, version: str | None, uri: str | None) -> str:
    if uri:
        return uri
    return f"models:/{name}/{version}" if version else f"models:/{name}@{CHAMPION}"


def score(model, rows: pd.DataFrame, chunk: int, explain: bool = False) -> pd.DataFrame:
    """The model's predictions for every row, ``chunk`` rows per call; with ``explain``, each
    row's raw score and contributions too (the served model's ``explain`` param)."""
    parts = []
    params = {"explain": True} if explain else None
    for start in range(0, len(rows), chunk):
        output = model.predict(rows.iloc[start : start + chunk], params=params)
        if not isinstance(output, pd.DataFrame):
            output = pd.DataFrame({"prediction": np.asarray(output)})
        parts.append(output)
    return pd.concat(parts, ignore_index=True)


def unseen_values(validation: dict) -> list[tuple[str, int, float]]:
    """Per open-ended category (its value-set check a warning): how many of the batch's values
    the training data never had, and their share."""
    return [
        (i["kwargs"]["column"], i["result"]["unexpected_count"], i["result"]["unexpected_percent"])
        for i in validation["results"]
        if i["expectation"] == "expect_column_values_to_be_in_set"
        and not i["success"]
        and i["severity"] != "critical"
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline predict", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", required=True, help="CSV or Parquet rows to score")
    parser.add_argument("--output", type=Path, required=True, help="Parquet file to write")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", help="registered version (default: the champion)")
    which.add_argument("--model", help="any MLflow model URI, e.g. models/pyfunc")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also write each row's raw_score and contribution.<feature> columns",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow
    from mlflow.exceptions import MlflowException

    args = parse_args(argv)
    params = load_params(args.params)
    rows = read_batch(
        args.input, params.dataset, params.validate_.suite
    )  # whole rows: the target, dropped columns too
    examples = params.validate_.result_examples
    validation = check_batch(rows, params.validate_.suite, optional_columns(params), examples)
    code, named = verdict(validation, [])
    for column, count, percent in unseen_values(validation):
        log.info(
            "%s: %d value(s) the data never had (%.1f%%), scored as missing", column, count, percent
        )
    if code == INVALID or named:
        print(format_table(findings(validation)), file=sys.stderr)  # noqa: T201 - the findings
    if code == INVALID:
        raise PipelineError(
            f"predict: {args.input} is not valid input: {', '.join(named)}", exit_code=INVALID
        )
    connect(repo_root())
    uri = model_uri(params.package.model_name, args.version, args.model)
    try:
        model = mlflow.pyfunc.load_model(uri)
        predictions = score(model, rows, params.package.max_batch_rows, args.explain)
    except MlflowException as exc:
        raise PipelineError(f"predict: {uri}: {exc.message}", exit_code=INVALID) from exc
    out = pd.concat([rows.reset_index(drop=True), predictions], axis=1)
    write_parquet(out, args.output)
    log.info("scored %d rows of %s with %s into %s", len(out), args.input, uri, args.output)
    return 0
