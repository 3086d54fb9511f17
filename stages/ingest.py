"""Stage ``ingest``: read the source table named in params, write it as Parquet.

The source (``dataset.source``) is ``package://<package>/<path>`` (a data file shipped inside
an installed Python package) or any local path or URL that pandas and fsspec read, as CSV or
Parquet. Besides the data it writes a metadata file: source, row count, schema, content hash.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core import cli
from mlpipeline.core.config import load_params
from mlpipeline.data.io import write_json
from mlpipeline.data.names import RAW_DATASET
from mlpipeline.data.sources import source_tags
from mlpipeline.engine.ingest import open_engine
from mlpipeline.track.runs import stage_run

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="Parquet (a folder with dask)")
    parser.add_argument("--meta", type=Path, required=True, help="metadata JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    with stage_run("ingest", params.ingest, inputs={}) as run, open_engine(params) as engine:
        meta = engine.ingest(params.ingest, args.out)
        write_json(meta, args.meta)
        log.info("read %d rows x %d columns from %s", meta["rows"], meta["columns"], meta["source"])
        tags = {"data.raw.sha256": meta["content_sha256"], "data.source": meta["source"]}
        tags.update(source_tags(params.ingest.source))  # the version dvc.lock will record
        run.set_tags({**tags, "engine": params.engine})
        run.log_metrics({"rows": meta["rows"], "columns": meta["columns"]})
        run.log_artifact(args.meta)
        run.log_dataset(RAW_DATASET, args.out, "raw")
    return 0


if __name__ == "__main__":
    cli.finish(cli.run(main))
