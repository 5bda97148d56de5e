"""Comparison mode: the difference of each measure between two sets of episodes, with a 95% interval.

This is the view the learning loops use to accept or reject a change (a new scaffold, a new memory adapter):
side A is the baseline, side B the candidate, and each measure's ``B - A`` comes with a bootstrap interval. When
both sides ran exactly the same seeds (per env), the comparison is paired: seeds are resampled, each seed
carrying its episodes on both sides, which removes the seed-to-seed variance of the games from the difference.
Otherwise episodes are resampled independently on each side.

A verdict reads the interval: ``better`` or ``worse`` when it excludes zero (in the measure's good direction or
not), ``unclear`` when it spans zero, ``same`` when every resample gave exactly zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from automem.diagnostics.stats import compare
from automem.diagnostics.summary import MEASURES, Measure, units

SEED_KEY = ("env_id", "seed")


def _seeds(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in SEED_KEY), strict=True))


def pairable(a: pa.Table, b: pa.Table) -> bool:
    """Both sides ran exactly the same (env, seed) set, with every seed known."""
    sa, sb = _seeds(a), _seeds(b)
    if not sa or any(s[1] is None for s in sa + sb):
        return False
    return set(sa) == set(sb)


def _per_seed(table: pa.Table, m: Measure, order: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    num, den = units(table, m)
    pos = {s: i for i, s in enumerate(order)}
    n, d = np.zeros(len(order)), np.zeros(len(order))
    for s, x, y in zip(_seeds(table), num, den, strict=True):
        n[pos[s]] += x
        d[pos[s]] += y
    return n, d


def verdict(m: Measure, lo: float | None, hi: float | None) -> str:
    """``better``, ``worse``, ``unclear`` or ``same`` from the interval of ``B - A``."""
    if lo is None or hi is None:
        return "unclear"
    if lo == hi == 0:
        return "same"
    if lo <= 0 <= hi:
        return "unclear"
    up = lo > 0
    return "better" if up == (m.better == "higher") else "worse"


def compare_tables(a: pa.Table, b: pa.Table, *, label_a: str = "A", label_b: str = "B") -> pa.Table:
    """Each measure on both sides, ``B - A`` with its 95% interval, the pairing used and a verdict.

    Args:
        a, b: per-episode tables (``EpisodeDiagnostics.table``) of the baseline and of the candidate.
        label_a, label_b: names shown for the sides.
    """
    paired = pairable(a, b)
    order = sorted(set(_seeds(a)), key=lambda s: (str(s[0]), s[1])) if paired else []
    rows: list[dict[str, Any]] = []
    for m in MEASURES:
        if paired:
            d = compare(_per_seed(a, m, order), _per_seed(b, m, order), paired=True)
        else:
            d = compare(units(a, m), units(b, m), paired=False)
        rows.append(
            {
                "a": label_a,
                "b": label_b,
                "measure": m.name,
                "value_a": d.a,
                "value_b": d.b,
                "diff": d.diff,
                "diff_lo": d.lo,
                "diff_hi": d.hi,
                "paired": paired,
                "n_a": a.num_rows,
                "n_b": b.num_rows,
                "verdict": verdict(m, d.lo, d.hi),
            }
        )
    return pa.Table.from_pylist(rows)


def compare_groups(per_episode: pa.Table, column: str, baseline: str | None = None) -> pa.Table:
    """Within one store: every value of ``column`` against a baseline value (default: the first, sorted).

    Raises:
        ValueError: fewer than two values, or an unknown baseline.
    """
    values = per_episode.column(column).to_pylist()
    distinct = sorted({str(v) for v in values})
    if len(distinct) < 2:
        raise ValueError(f"--compare {column}: need at least two values, found {distinct}")
    base = distinct[0] if baseline is None else baseline
    if base not in distinct:
        raise ValueError(f"baseline {base!r} is not a value of {column}: {distinct}")
    mask = {v: pa.array([str(x) == v for x in values]) for v in distinct}
    a = per_episode.filter(mask[base])
    parts = [
        compare_tables(a, per_episode.filter(mask[v]), label_a=base, label_b=v) for v in distinct if v != base
    ]
    return pa.concat_tables(parts)


__all__ = ["compare_groups", "compare_tables", "pairable", "verdict"]
