"""``python -m mlpipeline init``: adapt the repository to your own table, in one command.

    python -m mlpipeline init --source data/external/houses.csv --target price
    python -m mlpipeline init --source loans.parquet --target outcome --task binary \
        --drop applicant_id --name loan-approval

Reads the table (CSV or Parquet, a path or URL, as ingest does), infers the task from the
target and each column's role (category, date, or dropped with the reason: identifiers, free
text, constants), and writes them into ``params.yaml`` — its ``dataset`` section first, then
the task's objective, target transform, metric and gate, a stratified split for
classification, one feature set of every feature, and the model's name, intended use and
limitations (with a TODO until a person writes them) — keeping the file's comments. Then it
builds both expectation suites from the table. Afterwards ``dvc repro`` runs end to end.
Running it twice on the same file writes the same bytes.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.commands.build_suite import featurized_parts
from mlpipeline.core.config import load_params
from mlpipeline.data.io import (
    PACKAGE_SCHEME,
    partition_keys,
    read_source,
    resolve_source,
    write_text,
)
from mlpipeline.data.profile import Profile, profile
from mlpipeline.data.sources import (
    Tracking,
    is_dvc_repository,
    is_url,
    track,
    tracking,
    with_source_dependency,
)
from mlpipeline.quality.suite import build_suite, never_missing, to_json
from mlpipeline.quality.validation import parse_suite

THRESHOLDS = {"regression": {"r2": 0.0}, "binary": {"roc_auc": 0.6}, "multiclass": {"roc_auc": 0.6}}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipeline init",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", required=True, help="CSV or Parquet: a path or URL")
    parser.add_argument("--target", required=True, help="the column to predict")
    parser.add_argument(
        "--task", default="auto", choices=["auto", "regression", "binary", "multiclass"]
    )
    parser.add_argument("--drop", action="append", default=[], help="a column the model skips")
    parser.add_argument("--name", help="the registered model's name (default: from the file)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--no-track",
        action="store_true",
        help="leave the source out of DVC (by default: dvc add, or dvc import-url for a URL or "
        "a path outside the repository, and ingest depends on it)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="a URL or a path outside the repository stays where it is (no copy, no cache): "
        "ingest depends on it directly and dvc.lock records its ETag; for tables too big to copy",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    build = load_params(args.params).validate_.build
    frame = as_ingested(read_source(args.source))
    keys = tuple(partition_keys(resolve_source(args.source)))
    found = profile(frame, args.target, args.task, tuple(args.drop), build.max_categories, keys)
    name = args.name or model_name(args.source, args.target)
    root = args.params.resolve().parent
    tracked = not args.no_track and is_dvc_repository(root)
    plan = tracking(args.source, root, args.in_place) if tracked else untracked(args.source)
    track(plan, root)
    write_params(args.params, updated(args.params, args.source, plan.source, found, name))
    if tracked:
        dvc_yaml = root / "dvc.yaml"
        write_text(with_source_dependency(dvc_yaml.read_text(), plan.dependency), dvc_yaml)
    params = load_params(args.params)  # what was written, validated
    open_ended = params.package.open_ended(found.categorical)
    raw_name, unused = Path(params.validate_.suite).stem, list(params.dataset.drop)
    raw = build_suite(frame, raw_name, params.validate_.build, open_ended, unused)
    features = featurized_parts(frame, params, "split", never_missing(raw))
    suites = {
        params.validate_.suite: raw,
        params.validate_.features_suite: build_suite(
            features, Path(params.validate_.features_suite).stem, params.validate_.build, open_ended
        ),
    }
    for path, suite in suites.items():
        parse_suite(suite, path)  # refuse to write what would not load
        write_text(to_json(suite), Path(path))
    print(summary(found, name, args.params, list(suites), plan), file=sys.stderr)  # noqa: T201
    return 0


def as_ingested(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the pipeline's stages see it: through Parquet, as ingest writes it."""
    return pd.read_parquet(io.BytesIO(frame.to_parquet(index=False)))


def untracked(source: str) -> Tracking:
    """--no-track, or no DVC repository: the source as it is, nothing depends on it."""
    return Tracking(source, dependency=False)


def model_name(source: str, target: str) -> str:
    stem = Path(source.split("?", 1)[0]).name.split(".")[0]
    return re.sub(r"[^a-z0-9]+", "-", f"{stem}-{target}".lower()).strip("-")


def updated(path: Path, source: str, tracked: str, found: Profile, name: str) -> Any:
    """``params.yaml`` with what the table says, its comments kept (ruamel's round trip);
    ``dataset.source`` is ``tracked``, the source's path under DVC."""
    from ruamel.yaml import YAML

    reader = YAML()
    reader.preserve_quotes = True  # a quoted "off" stays a string (YAML 1.1 reads off as false)
    doc = reader.load(path.read_text())
    doc["dataset"].update(flow(dataset_section(tracked, found)))
    featurize = section(doc, "featurize")
    featurize.update(stratify=found.task != "regression", row_filters=[], derived={})
    train = section(doc, "train")
    train.update(objective="auto", target_transform=found.target_transform, positive_class=None)
    train["feature_sets"] = flow({"all": found.features})
    train["fixed"] = flow_map(found.fixed)
    search = section(train, "search")
    section(search, "space").pop("feature_set", None)
    search["metric"] = "auto"
    build = section(section(doc, "validate"), "build")
    build.update(positive=[], duplicate_tolerance=None)  # real duplicates warn, never stop
    package = section(doc, "package")
    package.update(model_name=name, **card_texts(source, found, name))
    package["unseen_categories"] = flow_map(found.unseen) if found.unseen else "reject"
    section(package, "gate")
    package["gate"].update(metric="auto", thresholds=THRESHOLDS[found.task])
    return doc


def section(doc: Any, key: str) -> Any:
    """``doc[key]``, made an empty mapping first where the file does not have it."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(doc.get(key), dict):
        doc[key] = CommentedMap()
    return doc[key]


def flow_map(values: dict[str, Any]) -> Any:
    """A mapping written on one line (``{a: x, b: y}``)."""
    from ruamel.yaml.comments import CommentedMap

    found = CommentedMap(values)
    found.fa.set_flow_style()
    return found


def flow(values: dict[str, Any]) -> dict[str, Any]:
    """Lists of names written on one line (``[a, b, c]``), as the file writes them."""
    from ruamel.yaml.comments import CommentedSeq

    def one_line(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()
        return seq

    return {key: one_line(value) for key, value in values.items()}


def dataset_section(source: str, found: Profile) -> dict[str, Any]:
    return {
        "source": source,
        "format": "auto",
        "target": found.target,
        "task": found.task,
        "categorical": found.categorical,
        "drop": found.drop,
        "dates": found.dates,
    }


def card_texts(source: str, found: Profile, name: str) -> dict[str, Any]:
    """The model card's words until a person writes them (the TODO shows in the card)."""
    what = f"{found.target} ({found.task})" + (
        f", classes {found.classes}" if found.classes else ""
    )
    return {
        "intended_use": f"TODO: who uses {name} and for what. It predicts {what} from the "
        f"other columns of {source}.",
        "limitations": [
            f"Trained on {found.rows - found.rows_without_target:,} rows of {source}; not valid "
            "outside the ranges of that data.",
            "TODO - where it must not be used, and what it was not tested on.",
        ],
    }


def write_params(path: Path, doc: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 92
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    stream = io.StringIO()
    yaml.dump(doc, stream)
    write_text(spaced(stream.getvalue()), path)


def spaced(text: str) -> str:
    """A blank line before each top-level key, as the file has them (a key removed or
    replaced by init may take the blank line after it along)."""
    lines = text.splitlines()
    out: list[str] = []
    for line in lines:
        top_level = line[:1].isalpha()
        if top_level and out and out[-1].strip() and not out[-1].startswith("#"):
            out.append("")
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def summary(found: Profile, name: str, params: Path, suites: list[str], plan: Tracking) -> str:
    """What init inferred, and what a person should review before trusting it."""
    dropped = "\n".join(f"    {c}: {why}" for c, why in found.drop.items()) or "    (none)"
    kept = "\n".join(f"    {c}: {why}" for c, why in found.kept.items()) or "    (none)"
    unseen = "\n".join(
        f"    {c}: {'refused (a closed set)' if how == 'reject' else 'scored as missing'}"
        for c, how in found.unseen.items()
    )
    return f"""init: {params} now describes '{found.target}' ({found.task})
  rows: {found.rows:,} ({found.rows_without_target:,} without a target, left out of training)
  features: {len(found.features)} — categorical {found.categorical or "(none)"}, dates {
        found.dates or "(none)"
    }
  target transform: {found.target_transform}
  LightGBM held fixed (train.fixed): {held_fixed(found)}
  kept:
{kept}
  dropped:
{dropped}
  a category value the model was not trained on (package.unseen_categories):
{unseen or "    (no categories)"}
  model name: {name}
  suites written: {", ".join(suites)}
  source: {versioned(plan)}
Review before trusting it: dataset.categorical / dataset.drop / dataset.dates; the gate's
thresholds (package.gate); package.intended_use and limitations (TODO); data defects you
accept (validate.build.positive, then rebuild the raw suite); featurize.row_filters and
derived features. Then: dvc repro, and commit{to_commit(plan)}"""


def held_fixed(found: Profile) -> str:
    if not found.fixed:
        return "(nothing)"
    return (
        f"max_cat_to_onehot: {found.fixed['max_cat_to_onehot']} (too few rows per category "
        "value for grouped splits: each value is split against the rest)"
    )


def versioned(plan: Tracking) -> str:
    """How the summary says where the source's version is kept."""
    if plan.source.startswith(PACKAGE_SCHEME):
        return f"{plan.source} (a package table: the pinned package is its version)"
    if not plan.dependency:
        return f"{plan.source} (as it is: not under DVC, and ingest does not depend on it)"
    if plan.command:
        how = "dvc add" if plan.command[0] == "add" else "dvc import-url (dvc update: a newer one)"
        return f"{plan.source}, tracked with {how}; ingest depends on it (dvc.yaml)"
    if is_url(plan.source) or Path(plan.source).is_absolute():
        return f"{plan.source}, read in place; ingest depends on it (dvc.lock: its version)"
    return f"{plan.source}, tracked by DVC already ({plan.source}.dvc); ingest depends on it"


def to_commit(plan: Tracking) -> str:
    if not plan.command:
        return ""
    ignore = Path(plan.source).parent / ".gitignore"  # DVC writes one unless git ignores it
    written = f", {ignore.as_posix()}" if ignore.exists() else ""
    return f" {plan.source}.dvc{written}, dvc.yaml, params.yaml and the suites (then dvc push)"
