"""The source table under DVC: how ``init`` tracks it, and the version every run names.

A file or folder inside the repository is tracked with ``dvc add`` (its ``.dvc`` file goes
in git, its data in DVC's cache and remote). Anything else — a URL (``s3://``, ``gs://``,
``azure://``, ``https://``, ...) or a path outside the repository — is imported with
``dvc import-url`` into ``data/external/``, so the ``.dvc`` file records the object's version
(ETag, checksum or MD5) and ``dvc update`` fetches a newer one. ``package://`` sources (the
demo table) stay as they are: the pinned package is their version.

For a table too big to copy, ``init --in-place`` leaves a URL where it is and makes it an
external dependency of ingest: ``dvc.lock`` records its ETag (or checksum), ``dvc status`` asks
the store each time, and nothing is cached — so an old version can be rebuilt only while the
store keeps it (a versioned bucket).

Ingest depends on the tracked path (``${dataset.source}`` in ``dvc.yaml``), so ``dvc status``
names ingest when the data changes and ``dvc.lock`` records which data each model came from.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlpipeline.core.codedeps import deps_block, is_code_path, item_path
from mlpipeline.core.errors import PipelineError
from mlpipeline.data.io import PACKAGE_SCHEME, dvc_md5

EXTERNAL = Path("data/external")  # where imported sources land (dvc import-url)
SOURCE_DEPENDENCY = "      - ${dataset.source}  # the source table, tracked by DVC (init)\n"
ORIGIN_VERSION_KEYS = ("version_id", "etag", "checksum", "md5")  # import-url's dependency


@dataclass(frozen=True)
class Tracking:
    """What ``dataset.source`` becomes, and the DVC command that puts it under DVC."""

    source: str
    command: tuple[str, ...] = ()  # (): nothing to do (a package table, or tracked already)
    dependency: bool = True  # ingest depends on ``source`` in dvc.yaml (not a package table)


def is_url(source: str) -> bool:
    return "://" in source and not source.startswith(PACKAGE_SCHEME)


def tracking(source: str, root: Path, in_place: bool = False) -> Tracking:
    """How ``source`` goes under DVC in the repository at ``root``; ``in_place``: a URL or a
    path outside the repository stays where it is, an external dependency of ingest."""
    if source.startswith(PACKAGE_SCHEME):
        return Tracking(source, dependency=False)
    outside = is_url(source) or not Path(source).resolve().is_relative_to(root.resolve())
    if in_place and outside:
        return Tracking(source if is_url(source) else str(Path(source).resolve()))
    if not is_url(source):
        path = Path(source).resolve()
        if path.is_relative_to(root.resolve()):
            inside = path.relative_to(root.resolve()).as_posix()
            if imported_from(root / f"{inside}.dvc"):  # an earlier init's import: dvc update
                return Tracking(inside)
            return Tracking(inside, ("add", inside))
        source = str(path)
    name = Path(source.split("?", 1)[0].rstrip("/")).name
    target = (EXTERNAL / name).as_posix()
    earlier = imported_from(root / f"{target}.dvc")
    if (root / target).exists() and earlier != source:
        raise PipelineError(
            f"init: {target} exists and is not an import of {source}; move it away, or pass "
            f"--source {target} to use it as it is"
        )
    return Tracking(target, ("import-url", "--force", source, target))


def imported_from(dvc_file: Path) -> str:
    """The URL or path a ``.dvc`` file imports (``dvc import-url``); '' if it is not one."""
    deps = read_yaml(dvc_file).get("deps") or [{}]
    return str(deps[0].get("path", ""))


def track(plan: Tracking, root: Path) -> None:
    """Run the plan's DVC command in ``root``; a failure ends with DVC's own reason."""
    if not plan.command:
        return
    (root / plan.source).parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dvc", *plan.command]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        found = next((line for line in lines if line.startswith("ERROR")), (lines or [""])[-1])
        reason = found.removeprefix("ERROR:").strip().rstrip(".")
        fixes = [line for line in lines if line.startswith("git ")]  # DVC's own advice
        advice = f"; {' && '.join(fixes)}, then init again" if fixes else ""
        raise PipelineError(
            f"init: `dvc {' '.join(plan.command)}` failed: {reason}{advice} (params.yaml and "
            "the suites are unchanged; --no-track leaves the source to you)"
        )


def with_source_dependency(dvc_yaml: str, tracked: bool) -> str:
    """``dvc.yaml`` with ingest depending on ``${dataset.source}`` (``tracked``) or not (a
    package table): the line goes right after ingest's code dependencies."""
    lines = [line for line in dvc_yaml.splitlines(keepends=True) if line != SOURCE_DEPENDENCY]
    if not tracked:
        return "".join(lines)
    try:
        first, end = deps_block(lines, "ingest")
    except PipelineError as exc:
        raise PipelineError(
            f"init: {exc}: dvc.yaml has no ingest stage with a deps list; add "
            "'- ${dataset.source}' to ingest's deps yourself (or pass --no-track)"
        ) from exc
    code = [i for i in range(first, end) if is_code_path(item_path(lines[i]))]
    at = code[-1] + 1 if code else first
    return "".join([*lines[:at], SOURCE_DEPENDENCY, *lines[at:]])


def source_version(root: Path) -> dict[str, str]:
    """The source's version as ``dvc.lock`` records it (ingest's data dependency: path and
    MD5) and, for an import, where it came from and the object's version there."""
    ingest = read_yaml(root / "dvc.lock").get("stages", {}).get("ingest", {})
    data = [d for d in ingest.get("deps", []) if not is_code_path(str(d.get("path")))]
    if not data:
        return {}
    path = str(data[0]["path"])
    if is_url(path):  # read in place (init --in-place): the lock holds the object's version
        return {"data.source": path, **origin_version_of(data[0])}
    tags = {"data.source": path, "data.source.md5": str(data[0].get("md5", ""))}
    return {**tags, **origin_version(root / f"{path}.dvc")}


def source_tags(source: str) -> dict[str, str]:
    """What ingest records of the source it read: path, the MD5 ``dvc.lock`` will record for it
    (a folder's ``<md5>.dir``) and an import's origin; for a URL read in place, the URL and
    the version its store reports now. {} for a package table."""
    if is_url(source):
        return {"data.source": source, **object_version(source)}
    if source.startswith(PACKAGE_SCHEME) or not Path(source).exists():
        return {}
    tags = {"data.source": source, "data.source.md5": dvc_md5(Path(source))}
    return {**tags, **origin_version(Path(f"{source}.dvc"))}


def origin_version(dvc_file: Path) -> dict[str, str]:
    """For an imported source: its URL and the version its ``.dvc`` file records."""
    deps = read_yaml(dvc_file).get("deps") or []
    return origin_version_of(deps[0]) if deps else {}


def origin_version_of(dependency: dict) -> dict[str, str]:
    """A URL dependency's path and the version DVC recorded for it (``etag e1``...)."""
    found = next((k for k in ORIGIN_VERSION_KEYS if dependency.get(k)), "")
    version = f"{found} {dependency[found]}" if found else ""
    origin = str(dependency.get("path", ""))
    return {"data.source.origin": origin, "data.source.origin_version": version}


def object_version(url: str) -> dict[str, str]:
    """The object's version as its store reports it now (the ETag DVC will lock); {} when the
    store does not say, or cannot be asked — ingest's own read names a store that is down."""
    import fsspec

    try:
        info = fsspec.core.url_to_fs(url)[0].info(url)
    except Exception:
        return {}
    found = {str(k).lower(): v for k, v in info.items()}
    version = next(
        (f"{k} {found[k]}".replace('"', "") for k in ("etag", "checksum") if found.get(k)), ""
    )
    return {"data.source.origin": url, "data.source.origin_version": version} if version else {}


def read_yaml(path: Path) -> dict:
    try:
        found = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return found if isinstance(found, dict) else {}


def is_dvc_repository(root: Path) -> bool:
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").is_file()
