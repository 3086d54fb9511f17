"""Stage ``package``: wrap the trained booster as an MLflow pyfunc model that takes raw rows.

The model is saved with models-from-code (``stages/serving.py``): LightGBM's text booster and
a JSON feature spec as artifacts, ``stages/features.py`` as code, no pickle. It is written to
the output folder (a DVC output, servable with ``mlflow models serve``) and logged to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from stages import cli
from stages.features import FeatureSpec, build_features, model_output
from stages.files import atomic_dir, read_json, write_json
from stages.params import load_params
from stages.tracking import stage_run

log = logging.getLogger(__name__)

SERVING_CODE = Path(__file__).with_name("serving.py")
FEATURES_CODE = Path(__file__).with_name("features.py")
RUNTIME_PACKAGES = ("lightgbm", "numpy", "pandas", "numexpr")
SHIPPED_FEATURES = "pipeline_features"  # the module name serving.py imports
# What the served model needs from train's summary (see serving.py).
SERVED_SUMMARY = (
    "task",
    "spec",
    "target",
    "target_transform",
    "classes",
    "features",
    "num_threads",
)


def input_example(raw: pd.DataFrame, spec: FeatureSpec, rows: int) -> pd.DataFrame:
    """The first raw rows, inputs only, with text columns as plain strings for MLflow."""
    example = raw.loc[: rows - 1, spec.inputs].copy()
    for column in example.columns:
        if not pd.api.types.is_numeric_dtype(example[column]):
            example[column] = example[column].astype(object)
    return example


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the served model, from the installed versions."""
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def code_package(folder: Path) -> Path:
    """The featurization as a top-level module, to ship inside the model.

    A module of its own name, not ``stages``: MLflow puts the model's code folder first on
    ``sys.path`` when it loads a model, and a second, partial ``stages`` package there would
    shadow this repository's for anything imported afterwards (worker processes included).
    """
    module = folder / f"{SHIPPED_FEATURES}.py"
    shutil.copy2(FEATURES_CODE, module)
    return module


def model_kwargs(booster: Path, meta: Path, code: Path, example: pd.DataFrame, signature) -> dict:
    return {
        "python_model": str(SERVING_CODE),
        "artifacts": {"booster": str(booster), "metadata": str(meta)},
        "code_paths": [str(code)],
        "signature": signature,
        "input_example": example,
        "pip_requirements": pip_requirements(),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model-dir", type=Path, required=True, help="train's output folder")
    parser.add_argument("--raw", type=Path, required=True, help="raw table (input example)")
    parser.add_argument("--out", type=Path, required=True, help="MLflow model folder to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    args = _parse_args(argv)
    params = load_params(args.params).package
    summary = read_json(args.model_dir / "summary.json")
    spec = FeatureSpec(**summary["spec"])
    booster_path = args.model_dir / "booster.txt"
    example = input_example(
        pd.read_parquet(args.raw, columns=spec.inputs), spec, params.input_example_rows
    )
    booster = lgb.Booster(model_file=str(booster_path))
    meta = {key: summary.get(key) for key in SERVED_SUMMARY}
    signature = infer_signature(
        example, model_output(booster.predict(build_features(example, spec)), meta)
    )
    inputs = {"booster": booster_path, "summary": args.model_dir / "summary.json"}
    with (
        stage_run("package", params, inputs=inputs) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        meta_path = Path(scratch) / "metadata.json"
        write_json(meta, meta_path)
        kwargs = model_kwargs(
            booster_path, meta_path, code_package(Path(scratch)), example, signature
        )
        with atomic_dir(args.out) as build:
            mlflow.pyfunc.save_model(str(build), **kwargs)
        logged = mlflow.pyfunc.log_model(name="model", **kwargs)
        run.set_tags({"model.uri": logged.model_uri, "model.name": params.model_name})
    log.info("packaged model in %s (logged as %s)", args.out, logged.model_uri)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
