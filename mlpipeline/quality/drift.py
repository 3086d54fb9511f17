"""Drift statistics sized to the rows they compare: the one rule ``monitor`` and
``rollout-report`` judge a batch by.

As the drift tools choose (Evidently's defaults; TFDV's L-infinity for categories):

- a batch of at most ``test_max_rows`` values is compared with a two-sample test at
  significance ``alpha``, Bonferroni-corrected over the comparisons made at once, so a random
  sample of the reference alarms in at most ``alpha`` of the draws whatever the number of
  columns: Kolmogorov–Smirnov for numbers with more than ``FEW_VALUES`` distinct values, the
  chi-square test of homogeneity for categories, few-valued numbers and missing shares;
- a larger batch is compared by a distance with a fixed threshold, since a test on many rows
  rejects shifts too small to matter: the Wasserstein distance in units of the reference's
  standard deviation for numbers, the largest change of one value's share (L-infinity) for
  categories and missing shares.

Each result is a statistic and the threshold it is held to (for a test, its critical value),
so a report reads the same in both regimes: drifted when the statistic exceeds the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEW_VALUES = 5  # a numeric column with at most this many distinct values is compared as categories
MIN_EXPECTED = 5  # chi-square: values expected fewer times than this are pooled into one cell


@dataclass(frozen=True)
class DriftRule:
    """The thresholds of the rule (``monitor.drift`` in params)."""

    alpha: float = 0.05
    test_max_rows: int = 1000
    wasserstein: float = 0.1
    linf: float = 0.1


@dataclass(frozen=True)
class Drift:
    """One comparison: which statistic, its value and the threshold it is held to."""

    column: str
    kind: str  # numeric | categorical | missing | prediction
    method: str  # ks | chi2 | wasserstein | linf | none (nothing to compare)
    value: float
    threshold: float
    rows: int  # the batch's values compared

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


def compare_numbers(
    column: str, kind: str, reference: np.ndarray, batch: np.ndarray, rule: DriftRule, tests: int
) -> Drift:
    """Numbers (missing values left out: their share is compared on its own)."""
    reference = np.asarray(reference, dtype=float)
    batch = np.asarray(batch, dtype=float)
    reference, batch = reference[~np.isnan(reference)], batch[~np.isnan(batch)]
    if len(reference) == 0 or len(batch) == 0:
        return Drift(column, kind, "none", 0.0, 0.0, len(batch))
    if len(np.unique(reference)) <= FEW_VALUES:
        return compare_values(column, kind, pd.Series(reference), pd.Series(batch), rule, tests)
    if len(batch) <= rule.test_max_rows:
        return _ks(column, kind, reference, batch, rule.alpha / max(tests, 1))
    from scipy.stats import wasserstein_distance

    scale = float(np.std(reference)) or 1.0
    value = float(wasserstein_distance(reference, batch)) / scale
    return Drift(column, kind, "wasserstein", _round(value), rule.wasserstein, len(batch))


def compare_values(
    column: str, kind: str, reference: pd.Series, batch: pd.Series, rule: DriftRule, tests: int
) -> Drift:
    """Categories (as text or any hashable value; missing ones left out). A value the
    reference does not have is a cell of its own."""
    reference, batch = pd.Series(reference).dropna(), pd.Series(batch).dropna()
    if len(reference) == 0 or len(batch) == 0:
        return Drift(column, kind, "none", 0.0, 0.0, len(batch))
    counts = _value_counts(reference, batch)
    if len(batch) <= rule.test_max_rows:
        return _chi2(column, kind, counts, rule.alpha / max(tests, 1), len(batch))
    shares = counts / counts.sum(axis=0)
    value = float(np.abs(shares[:, 0] - shares[:, 1]).max())
    return Drift(column, kind, "linf", _round(value), rule.linf, len(batch))


def _value_counts(reference: pd.Series, batch: pd.Series) -> np.ndarray:
    """One row per value seen in either sample (in order of first appearance, the
    reference's first): its count in the reference, then in the batch."""
    codes, values = pd.factorize(pd.concat([reference, batch], ignore_index=True))
    split = len(reference)
    return np.stack(
        [
            np.bincount(codes[:split], minlength=len(values)),
            np.bincount(codes[split:], minlength=len(values)),
        ],
        axis=1,
    ).astype(float)


def compare_missing(
    column: str, reference: pd.Series, batch: pd.Series, rule: DriftRule, tests: int
) -> Drift:
    """The share of missing values, as a two-valued category."""
    return compare_values(
        column, "missing", pd.Series(reference).isna(), pd.Series(batch).isna(), rule, tests
    )


def _ks(column: str, kind: str, reference: np.ndarray, batch: np.ndarray, alpha: float) -> Drift:
    """Kolmogorov–Smirnov's statistic against its asymptotic critical value at ``alpha``
    (conservative for small samples and for ties)."""
    from scipy.stats import ks_2samp

    n, m = len(batch), len(reference)
    statistic = float(ks_2samp(reference, batch).statistic)
    critical = np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((n + m) / (n * m))
    return Drift(column, kind, "ks", _round(statistic), _round(critical), n)


def _chi2(column: str, kind: str, counts: np.ndarray, alpha: float, rows: int) -> Drift:
    """Chi-square test of homogeneity of two samples' counts; values expected fewer than
    ``MIN_EXPECTED`` times in the batch are pooled, so sparse cells do not inflate it."""
    from scipy.stats import chi2

    observed = _pooled(counts)
    if len(observed) < 2:
        return Drift(column, kind, "none", 0.0, 0.0, rows)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0) / observed.sum()
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    critical = float(chi2.ppf(1 - alpha, df=len(observed) - 1))
    return Drift(column, kind, "chi2", _round(statistic), _round(critical), rows)


def _pooled(counts: np.ndarray) -> np.ndarray:
    """The values expected fewer than ``MIN_EXPECTED`` times in the batch, pooled into one
    row; a pool still that sparse joins the least frequent other value."""
    expected = counts.sum(axis=1) / counts.sum() * counts[:, 1].sum()
    rare = expected < MIN_EXPECTED
    kept = counts[~rare]
    kept = kept[np.argsort(kept[:, 1], kind="stable")]
    if not rare.any():
        return kept
    pool = counts[rare].sum(axis=0)
    if expected[rare].sum() >= MIN_EXPECTED or len(kept) == 0:
        return np.vstack([kept, pool])
    kept[0] += pool
    return kept


def _round(value: float) -> float:
    return round(float(value), 6)
