"""``python -m mlpipeline plots``: the DVC plots as a page that renders offline and as PNG
images, and the model card as HTML beside them.

python -m mlpipeline plots [--out dvc_plots] [--rev REV] [--card reports/model_card.md]

Writes to ``--out``:
  index.html         DVC's own page (`dvc plots show`; `dvc plots diff REV` with --rev) made
                     with an HTML template that inlines the Vega libraries instead of loading
                     them from a CDN, so it renders without network
  plots/<name>.png   each plot as DVC draws it, rendered offline by vl-convert
  model_card.html    the model card as HTML; its images are plots/<name>.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import write_text
from mlpipeline.serve.card import card_html
from mlpipeline.track.plots import offline_template, png


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipeline plots", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("dvc_plots"), help="folder to write")
    parser.add_argument("--rev", help="compare with this git revision (dvc plots diff)")
    parser.add_argument("--card", type=Path, default=Path("reports/model_card.md"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = ["plots", "diff", args.rev] if args.rev else ["plots", "show"]
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "offline.html"
        template.write_text(offline_template(), encoding="utf-8")
        dvc([*command, "--html-template", str(template), "--out", str(args.out)])
    shown = json.loads(dvc([*command, "--json"]) or "{}")
    images = write_images(shown.get("data") or {}, args.out / "plots")
    written = [args.out / "index.html", *images]
    if args.card.is_file():
        page = card_html(args.card.read_text(encoding="utf-8"))
        write_text(page, args.out / "model_card.html")
        written.append(args.out / "model_card.html")
    for path in written:
        print(path, file=sys.stderr)  # noqa: T201 - what the command wrote
    return 0


def dvc(args: list[str]) -> str:
    """Run a ``dvc`` command of this environment; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise PipelineError(f"plots: `dvc {' '.join(args[:3])}` failed: {reason}")
    return done.stdout


def write_images(shown: dict, folder: Path) -> list[Path]:
    """One PNG per Vega-Lite plot of ``dvc plots show|diff --json`` (its ``data``), named
    after the plot's data file (``predictions.png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for plot_id, renders in sorted(shown.items()):
        specs = [r["content"] for r in renders if isinstance(r.get("content"), dict)]
        for i, spec in enumerate(specs):
            suffix = f"_{i}" if i else ""
            target = folder / f"{Path(plot_id).stem}{suffix}.png"
            target.write_bytes(png(spec))
            written.append(target)
    return written
