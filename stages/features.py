"""The featurization shared by training and serving, so the two cannot drift apart.

Raw rows in, model features out: categorical columns get the category levels learned on the
training split (an unseen value becomes missing), derived features are pandas expressions from
``params.yaml`` (a division by zero becomes missing, not infinity). This module imports only
pandas and numpy because the packaged model loads it at serving time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class FeatureError(ValueError):
    """Raw rows that cannot be featurized (for example, a missing input column)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn raw rows into model features."""

    inputs: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.inputs, *self.derived]

    def select(self, features: list[str]) -> FeatureSpec:
        """The smallest spec that still produces ``features``."""
        derived = {name: expr for name, expr in self.derived.items() if name in features}
        inputs = [c for c in self.inputs if c in features or _used_by(c, derived)]
        categories = {c: levels for c, levels in self.categories.items() if c in inputs}
        return FeatureSpec(inputs=inputs, categories=categories, derived=derived)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: Path) -> FeatureSpec:
        return cls(**json.loads(Path(path).read_text()))


def _used_by(column: str, derived: dict[str, str]) -> bool:
    import re

    pattern = re.compile(rf"(?<![\w.`]){re.escape(column)}(?![\w`])|`{re.escape(column)}`")
    return any(pattern.search(expr) for expr in derived.values())


def category_levels(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """Sorted distinct values of each categorical column (learned on the training split)."""
    return {c: sorted(map(str, frame[c].dropna().unique())) for c in columns}


def transform_target(values: np.ndarray, how: str) -> np.ndarray:
    """The target as the model learns it: ``log1p`` or unchanged."""
    values = np.asarray(values, dtype=float)
    return np.log1p(values) if how == "log1p" else values


def inverse_target(values: np.ndarray, how: str) -> np.ndarray:
    """Model output back on the target's own scale."""
    values = np.asarray(values, dtype=float)
    return np.expm1(values) if how == "log1p" else values


def build_features(raw: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Turn raw rows into the model's feature frame, in ``spec.features`` order."""
    missing = [c for c in spec.inputs if c not in raw.columns]
    if missing:
        raise FeatureError(f"input is missing column(s): {', '.join(missing)}")
    out = raw.loc[:, spec.inputs].copy()
    for column, levels in spec.categories.items():
        values = out[column].astype("string").astype(object)
        out[column] = pd.Categorical(values, categories=levels)
    for name, expression in spec.derived.items():
        try:
            values = out.eval(expression, engine="python")
        except Exception as exc:  # pandas raises many types for a bad expression
            raise FeatureError(f"derived feature '{name}' = '{expression}' failed: {exc}") from exc
        out[name] = pd.to_numeric(values, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return out[spec.features]
