"""Bootstrap confidence intervals for measures that are ratios of sums over episodes.

Every diagnostic is ``sum(numerator) / sum(denominator)`` over a set of episodes: a mean (progression) has
denominator 1 per episode; a rate (redundant writes per write) has the episode's count of writes. Resampling
episodes (or, when two sides ran the same seeds, resampling seeds for both sides at once) gives a percentile
confidence interval for the measure and for a difference between two sides. Resampling uses a fixed seed, so
the same store always prints the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    """``sum(num) / sum(den)``, or None when the denominator is zero."""
    d = float(np.sum(den))
    return float(np.sum(num)) / d if d else None


def _ratios(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Ratio of sums for each resample (rows of ``idx``); NaN where a resample's denominator is zero."""
    n, d = num[idx].sum(axis=1), den[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def _interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None, None
    lo, hi = np.quantile(samples, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    num: np.ndarray, den: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float | None, float | None]:
    """95% percentile interval of ``sum(num)/sum(den)``, resampling episodes with replacement.

    Returns ``(None, None)`` for an empty sample and the point value twice for a single episode.
    """
    num, den = np.asarray(num, float), np.asarray(den, float)
    if num.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(resamples, num.size))
    return _interval(_ratios(num, den, idx))


@dataclass(frozen=True)
class Difference:
    """``b - a`` of one measure, with its 95% interval and how it was paired."""

    a: float | None
    b: float | None
    diff: float | None
    lo: float | None
    hi: float | None
    paired: bool
    n_a: int
    n_b: int


def compare(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    *,
    paired: bool,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """Difference ``b - a`` of a ratio-of-sums measure with a bootstrap interval.

    Args:
        a, b: ``(numerators, denominators)`` per unit. Paired: units are seeds, aligned row by row on both sides
            (each side's episodes of that seed summed), and one resample of seeds serves both sides. Unpaired:
            units are episodes, resampled independently on each side.
        paired: whether rows of ``a`` and ``b`` are the same seeds.
    """
    (na, da), (nb, db) = (np.asarray(x, float) for x in a), (np.asarray(x, float) for x in b)
    va, vb = ratio(na, da), ratio(nb, db)
    diff = None if va is None or vb is None else vb - va
    if na.size == 0 or nb.size == 0:
        return Difference(va, vb, diff, None, None, paired, na.size, nb.size)
    rng = np.random.default_rng(seed)
    if paired:
        if na.size != nb.size:
            raise ValueError("paired comparison needs the same seeds on both sides")
        ia = ib = rng.integers(0, na.size, size=(resamples, na.size))
    else:
        ia = rng.integers(0, na.size, size=(resamples, na.size))
        ib = rng.integers(0, nb.size, size=(resamples, nb.size))
    lo, hi = _interval(_ratios(nb, db, ib) - _ratios(na, da, ia))
    return Difference(va, vb, diff, lo, hi, paired, na.size, nb.size)


__all__ = ["LEVEL", "RESAMPLES", "Difference", "bootstrap_ci", "compare", "ratio"]
