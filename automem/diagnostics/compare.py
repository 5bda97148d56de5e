"""Comparison mode: the difference of each measure between two sets of episodes, with a 95% interval.

This is the view the learning loops use to accept or reject a change (a new scaffold, a new memory adapter):
side A is the baseline, side B the candidate, and each measure's ``B - A`` comes with a bootstrap interval.

Pairing: an episode's seed is its ``(env_id, seed)``. The comparison is paired on the seeds both sides ran:
seeds are resampled, each seed carrying its episodes on both sides, which removes the seed-to-seed variance of
the games from the difference. Episodes whose seed the other side lacks (or whose seed is unknown) are left out
of a paired comparison, and their number is reported (``dropped_a``, ``dropped_b``). When the shared seeds are
too few to pair on (fewer than ``MIN_PAIRS``, or holding less than ``MIN_PAIRED_SHARE`` of either side's
episodes), the comparison is unpaired instead: every episode is kept and episodes are resampled independently
on each side.

A verdict reads the interval: ``better`` or ``worse`` when it excludes zero (in the measure's good direction or
not), ``unclear`` when it spans zero, ``same`` when every resample gave exactly zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from automem.diagnostics.stats import compare
from automem.diagnostics.summary import MEASURES, Measure, check_columns, group_rows, units

SEED_KEY = ("env_id", "seed")
MIN_PAIRS = 3
"""Fewest shared seeds a paired comparison needs."""
MIN_PAIRED_SHARE = 0.5
"""Smallest share of each side's episodes the shared seeds must hold for a paired comparison."""


def _seeds(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in SEED_KEY), strict=True))


def shared_seeds(a: pa.Table, b: pa.Table) -> set[tuple]:
    """The known ``(env_id, seed)`` pairs both sides ran."""
    return {s for s in _seeds(a) if s[1] is not None} & {s for s in _seeds(b) if s[1] is not None}


def pairable(a: pa.Table, b: pa.Table, common: set[tuple] | None = None) -> bool:
    """Whether the comparison of ``a`` and ``b`` is paired (see the module docstring for the rule).

    Args:
        common: ``shared_seeds(a, b)``, when the caller has it.
    """
    common = shared_seeds(a, b) if common is None else common
    if len(common) < MIN_PAIRS:
        return False
    return all(
        sum(s in common for s in _seeds(t)) >= MIN_PAIRED_SHARE * t.num_rows for t in (a, b) if t.num_rows
    )


def _only(table: pa.Table, seeds: set[tuple]) -> pa.Table:
    return table.filter(pa.array([s in seeds for s in _seeds(table)], pa.bool_()))


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

    Raises:
        ValueError: a side without episodes.

    Returns:
        One row per measure: ``a``, ``b`` (labels), ``measure``, ``value_a``, ``value_b``, ``diff``,
        ``diff_lo``, ``diff_hi``, ``paired``, ``pairs`` (shared seeds used; 0 when unpaired), ``shared_seeds``, ``n_a``, ``n_b``
        (episodes used), ``dropped_a``, ``dropped_b`` (episodes left out for want of a pair) and ``verdict``.
    """
    for label, t in ((label_a, a), (label_b, b)):
        if t.num_rows == 0 or "ops" not in t.column_names:
            raise ValueError(f"nothing to compare: {label} has no committed episodes")
    common = shared_seeds(a, b)
    paired = pairable(a, b, common)
    n_a, n_b = a.num_rows, b.num_rows
    order: list[tuple] = []
    if paired:
        a, b = _only(a, common), _only(b, common)
        order = sorted(common, key=lambda s: (str(s[0]), s[1]))
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
                "pairs": len(order),
                "shared_seeds": len(common),
                "n_a": a.num_rows,
                "n_b": b.num_rows,
                "dropped_a": n_a - a.num_rows,
                "dropped_b": n_b - b.num_rows,
                "verdict": verdict(m, d.lo, d.hi),
            }
        )
    return pa.Table.from_pylist(rows)


def _groups(table: pa.Table, by: list[str]) -> dict[tuple, pa.Table]:
    """The rows of each value of the ``by`` columns, in the order of the values as text."""
    rows = group_rows(table, by)
    return {
        k: table.take(pa.array(rows[k], pa.int64())) for k in sorted(rows, key=lambda g: tuple(map(str, g)))
    }


def _with_keys(table: pa.Table, by: list[str], key: tuple) -> pa.Table:
    """``table`` with the group's ``by`` columns first."""
    for i, c in enumerate(by):
        table = table.add_column(i, c, pa.array([key[i]] * table.num_rows))
    return table


def compare_by(
    a: pa.Table, b: pa.Table, by: list[str], *, label_a: str = "A", label_b: str = "B"
) -> tuple[pa.Table, list[str]]:
    """``compare_tables`` within each group of ``by`` (e.g. per env) that both sides have.

    Returns:
        The rows of every shared group, each with the group's ``by`` columns first, and notes naming the groups
        only one side has (they are not compared).

    Raises:
        ValueError: an unknown column, or no group on both sides.
    """
    if not by:
        return compare_tables(a, b, label_a=label_a, label_b=label_b), []
    for t in (a, b):
        check_columns(t, by, "--by")
    ga, gb = _groups(a, by), _groups(b, by)
    shared = [k for k in ga if k in gb]
    if not shared:
        raise ValueError(
            f"no value of --by {','.join(by)} is on both sides: {label_a} has {sorted(map(str, ga))}, "
            f"{label_b} has {sorted(map(str, gb))}"
        )
    parts = [
        _with_keys(compare_tables(ga[k], gb[k], label_a=label_a, label_b=label_b), by, k) for k in shared
    ]
    notes = [
        f"{label} only: {' / '.join(map(str, k))} ({g[k].num_rows} episodes), not compared"
        for label, g, other in ((label_a, ga, gb), (label_b, gb, ga))
        for k in g
        if k not in other
    ]
    return pa.concat_tables(parts, promote_options="default"), notes


def compare_groups(per_episode: pa.Table, column: str, baseline: str | None = None) -> pa.Table:
    """Within one store: every value of ``column`` against a baseline value (default: the first, sorted).

    Raises:
        ValueError: an unknown column, fewer than two values, or an unknown baseline.
    """
    check_columns(per_episode, [column], "--compare")
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


def compare_groups_by(
    per_episode: pa.Table, column: str, by: list[str], baseline: str | None = None
) -> tuple[pa.Table, list[str]]:
    """``compare_groups`` within each group of ``by`` (e.g. per env).

    Returns:
        The rows of every group that has two values of ``column``, each with the group's ``by`` columns first,
        and notes naming the groups not compared, and why.

    Raises:
        ValueError: an unknown column, or no group with two values of ``column`` to compare.
    """
    if not by:
        return compare_groups(per_episode, column, baseline), []
    check_columns(per_episode, by, "--by")
    parts, notes = [], []
    for key, part in _groups(per_episode, by).items():
        try:
            t = compare_groups(part, column, baseline)
        except ValueError as exc:
            notes.append(f"{' / '.join(map(str, key))}: not compared ({exc})")
            continue
        parts.append(_with_keys(t, by, key))
    if not parts:
        raise ValueError("no group of --by has two values of --compare to compare: " + "; ".join(notes))
    return pa.concat_tables(parts, promote_options="default"), notes


__all__ = [
    "MIN_PAIRED_SHARE",
    "MIN_PAIRS",
    "compare_by",
    "compare_groups",
    "compare_groups_by",
    "compare_tables",
    "pairable",
    "shared_seeds",
    "verdict",
]
