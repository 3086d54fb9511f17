"""The DVC plots as pictures, offline.

``dvc.yaml`` declares the plots (``plots:``: a data file and its title, template, axes). Each
definition is filled with its data exactly as ``dvc plots show`` fills it (DVC's own loader,
converter and Vega-Lite templates) and rendered to PNG by vl-convert, which runs Vega-Lite
without a browser or network. ``offline_template`` is a page for ``dvc plots show
--html-template`` with the Vega libraries inlined instead of DVC's CDN links, so DVC's own
HTML page renders offline too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DVC_FILE = Path("dvc.yaml")
PNG_SCALE = 1.0  # vl-convert's pixels per Vega-Lite pixel (DVC's plots are 300 x 300)
MAX_POINTS = 20_000  # a picture draws at most this many rows (Vega's memory grows with them)


@dataclass(frozen=True)
class PlotDefinition:
    """One top-level plot of ``dvc.yaml``: its data file and its properties."""

    path: str
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The image's name: the data file's stem (``predictions`` for predictions.csv)."""
        return Path(self.path).stem

    @property
    def title(self) -> str:
        return str(self.properties.get("title", self.name))


def plot_definitions(dvc_file: Path = DVC_FILE) -> list[PlotDefinition]:
    """The plots ``dvc.yaml`` declares, in its order (``path`` or ``path: {properties}``)."""
    entries = (yaml.safe_load(Path(dvc_file).read_text()) or {}).get("plots", []) or []
    found = []
    for entry in entries:
        items = entry.items() if isinstance(entry, dict) else [(entry, {})]
        found.extend(PlotDefinition(str(path), dict(props or {})) for path, props in items)
    return found


def present(definitions: list[PlotDefinition], folder: Path) -> list[PlotDefinition]:
    """The definitions whose data file is in ``folder`` (by file name): the plots a run
    wrote, which are those of its task."""
    return [d for d in definitions if (Path(folder) / Path(d.path).name).is_file()]


def vega_lite_spec(
    definition: PlotDefinition, data_file: Path, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """The Vega-Lite spec, data included, that ``dvc plots show`` draws for ``definition``
    with the data in ``data_file`` (DVC's loader, converter and template); of more than
    ``max_points`` rows, every k-th (rendering 60,000 points took 460 MiB and 8 s)."""
    from dvc.fs import LocalFileSystem
    from dvc.render.converter.vega import VegaConverter
    from dvc.repo.plots import parse
    from dvc_render import VegaRenderer

    props = dict(definition.properties)
    content = parse(LocalFileSystem(), str(data_file), props)
    if "error" in content:
        raise ValueError(f"{data_file}: {content['error']}")
    converter = VegaConverter(definition.path, {definition.path: content}, props)
    datapoints, filled = converter.flat_datapoints("workspace")
    filled.setdefault("title", definition.path)
    step = -(-len(datapoints) // max_points)
    if step > 1:  # the picture of a big test part: every step-th row, in order
        filled["title"] = f"{filled['title']} (every {step} of {len(datapoints):,} rows)"
        datapoints = datapoints[::step]
    return VegaRenderer(datapoints, definition.path, **filled).get_filled_template()


def vega_lite_version(spec: dict[str, Any]) -> str | None:
    """The newest Vega-Lite vl-convert ships of the major version the spec's ``$schema``
    names (DVC's templates: v5), or None for vl-convert's default."""
    import vl_convert

    major = re.search(r"/v(\d+)(?:\.\d+)*\.json", str(spec.get("$schema", "")))
    versions = vl_convert.get_vegalite_versions()
    matching = [v for v in versions if major and v.split(".")[0] == major.group(1)]
    return max(matching, key=lambda v: tuple(map(int, v.split(".")))) if matching else None


def png(spec: dict[str, Any]) -> bytes:
    """A Vega-Lite spec rendered to PNG offline."""
    import vl_convert

    return vl_convert.vegalite_to_png(spec, vl_version=vega_lite_version(spec), scale=PNG_SCALE)


def render_images(plots_dir: Path, out_dir: Path, dvc_file: Path = DVC_FILE) -> list[Path]:
    """One PNG per plot of ``dvc_file`` whose data is in ``plots_dir``, written to
    ``out_dir/<name>.png``; the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for definition in present(plot_definitions(dvc_file), plots_dir):
        spec = vega_lite_spec(definition, Path(plots_dir) / Path(definition.path).name)
        target = out_dir / f"{definition.name}.png"
        target.write_bytes(png(spec))
        written.append(target)
    return written


PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>DVC plots</title>
<!-- Vega, Vega-Lite and Vega-Embed inlined (vl-convert's bundle): no network needed -->
<script>{bundle}</script>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}} table{{border-spacing:15px}}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def offline_template(vl_version: str = "5") -> str:
    """A ``dvc plots show --html-template`` page with the Vega libraries inlined (Vega-Lite
    ``vl_version``: the newest vl-convert ships of that major version)."""
    import vl_convert

    version = vega_lite_version({"$schema": f"/v{vl_version}.json"})
    bundle = vl_convert.javascript_bundle(vl_version=version)
    clashes = [p for p in ("{plot_divs}", "{scripts}", "{refresh_tag}") if p in bundle]
    if clashes:  # DVC would replace them inside the libraries' code
        raise ValueError(f"vl-convert's bundle contains DVC's placeholders {clashes}")
    return PAGE.format(bundle=bundle.replace("</script", "<\\/script"))
