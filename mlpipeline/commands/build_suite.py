"""``python -m mlpipeline build-suite``: write a Great Expectations suite from a trusted table.

    python -m mlpipeline build-suite --reference data/raw/data.parquet --out expectations/raw.json
    python -m mlpipeline build-suite --featurize --reference data/raw/data.parquet \
        --out expectations/features.json

``--reference`` takes anything ingest reads (Parquet, CSV, ``package://``, a URL); several
``NAME=PATH`` references are stacked with a ``split`` column. ``--featurize`` builds the
features suite from the raw table: it is cleaned, split and featurized as the featurize stage
does (``featurize`` and ``seed`` in params), and the suite describes the train and test parts
(stacked, with the ``split`` column the stage checks); which inputs may be missing follows the
raw suite (``validate.suite``), so build that one first. Thresholds come from ``validate.build``
in params. The same data gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from mlpipeline.core.config import Params, load_params
from mlpipeline.data.io import read_json, read_named, write_text
from mlpipeline.features.prepare import featurize_table
from mlpipeline.quality.suite import build_suite, never_missing, to_json
from mlpipeline.quality.validation import parse_suite

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipeline build-suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--reference", action="append", required=True, metavar="[NAME=]PATH")
    parser.add_argument("--out", type=Path, required=True, help="suite JSON to write")
    parser.add_argument("--label", default="split", help="column naming each reference table")
    parser.add_argument(
        "--featurize", action="store_true", help="featurize the raw reference: the features suite"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    reference = read_named(args.reference, args.label)
    if args.featurize:
        raw_suite = read_json(Path(params.validate_.suite))
        reference = featurized_parts(reference, params, args.label, never_missing(raw_suite))
    open_ended = params.package.open_ended(params.dataset.categorical)
    unused = () if args.featurize else list(params.dataset.drop)
    suite = build_suite(reference, args.out.stem, params.validate_.build, open_ended, unused)
    parse_suite(suite, args.out)  # refuse to write what would not load
    write_text(to_json(suite), args.out)
    log.info("wrote %d expectations to %s", len(suite["expectations"]), args.out)
    return 0


def featurized_parts(
    raw: pd.DataFrame, params: Params, label: str, never: Collection[str]
) -> pd.DataFrame:
    """The train and test features of a raw table, as the featurize stage makes and checks
    them (``never``: the inputs the raw suite declares never missing): stacked, ``label``
    naming each row's part."""
    prepared = featurize_table(raw, params.featurize, params.seed, never)
    parts = [prepared.train.assign(**{label: "train"}), prepared.test.assign(**{label: "test"})]
    return pd.concat(parts, ignore_index=True)
