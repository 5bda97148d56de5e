"""Compare branches with their reference arm, paired by branch point and copy.

Every (point, copy) of a branch run is played under each arm with the same sampling seed, so the difference of an
outcome between an arm and the reference arm (the plan's first: the control, or ``recorded`` in a credit run) is
measured on common random numbers. Per arm: the mean paired difference over all (point, copy) pairs with a 95%
bootstrap interval (pairs resampled), and per point the mean over its copies with its own interval. Outcomes:
progression at the end of the branch, the progression gained from the branch point, failed memory operations and
memory operations per step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automem.diagnostics.stats import LEVEL, RESAMPLES

MEASURES = ("progression", "op_errors_per_step", "ops_per_step")
"""The outcomes compared, per branch episode."""

BRANCH_OUTCOMES_SQL = """
SELECT b.run_id, b.episode_id, b.point, b.arm, b.copy, b.parent_run_id, b.parent_episode_id, b.branch_step,
       b.changes, e.progression, e.steps, e.op_errors,
       (SELECT count(*) FROM memory_ops o WHERE o.run_id = e.run_id AND o.episode_id = e.episode_id
            AND o.phase <> 'init') AS ops
FROM branches b JOIN episodes e USING (run_id, episode_id)
{where}
ORDER BY b.run_id, b.point, b.arm, b.copy
"""


def mean_ci(values: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of ``values`` (the mean twice for one value)."""
    v = np.asarray(values, float)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return m, float(lo), float(hi)


@dataclass
class PointDiff:
    """One branch point's paired difference (arm - reference) over its copies."""

    point: int
    parent_run_id: str
    parent_episode_id: str
    branch_step: int
    changes: dict[str, Any]
    n: int
    reference: float
    arm: float
    diff: float
    lo: float
    hi: float
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    """The memory measures (failed ops and ops per step) at this point: {reference, arm, diff, lo, hi}."""


@dataclass
class ArmComparison:
    """An arm against the run's reference arm: per measure the mean paired difference with its interval."""

    run_id: str
    reference: str
    arm: str
    pairs: int
    measures: dict[str, dict[str, float]] = field(default_factory=dict)
    """measure -> {reference, arm, diff, lo, hi}."""
    points: list[PointDiff] = field(default_factory=list)
    """Progression by point."""
    unpaired: int = 0
    """Episodes of the arm without a committed partner (not counted)."""


def _outcome(row: dict[str, Any], measure: str) -> float:
    steps = max(1, int(row["steps"] or 0))
    if measure == "progression":
        return float(row["progression"] or 0.0)
    if measure == "op_errors_per_step":
        return float(row["op_errors"] or 0) / steps
    return float(row["ops"] or 0) / steps


def reference_arm(names: list[str], *, planned: bool) -> str:
    """The arm the others are compared with: the plan's first (``planned``: ``names`` in plan order), else
    ``control`` or ``recorded`` when present, else the first name."""
    if planned:
        return names[0]
    return next((a for a in ("control", "recorded") if a in names), names[0])


def compare_rows(rows: list[dict[str, Any]], arms: list[str] | None = None) -> list[ArmComparison]:
    """Comparisons of every arm of every run in ``rows`` (``BRANCH_OUTCOMES_SQL``'s) with its run's reference.

    Args:
        rows: one per committed branch episode.
        arms: the arms in plan order per run (the first is the reference); None: ``control`` (or ``recorded``)
            if present, else the first in name order.
    """
    out: list[ArmComparison] = []
    runs = sorted({r["run_id"] for r in rows})
    for run_id in runs:
        mine = [r for r in rows if r["run_id"] == run_id]
        names = arms or sorted({r["arm"] for r in mine})
        ref = reference_arm(names, planned=arms is not None)
        by = {(r["point"], r["arm"], r["copy"]): r for r in mine}
        for arm in [a for a in names if a != ref]:
            keys = sorted((p, c) for p, a, c in by if a == arm)
            pairs = [(by[(p, ref, c)], by[(p, arm, c)]) for p, c in keys if (p, ref, c) in by]
            comp = ArmComparison(run_id, ref, arm, len(pairs), unpaired=len(keys) - len(pairs))
            if not pairs:
                out.append(comp)
                continue
            for m in MEASURES:
                a = np.array([_outcome(x, m) for x, _ in pairs])
                b = np.array([_outcome(y, m) for _, y in pairs])
                d, lo, hi = mean_ci(b - a)
                comp.measures[m] = {
                    "reference": float(a.mean()),
                    "arm": float(b.mean()),
                    "diff": d,
                    "lo": lo,
                    "hi": hi,
                }
            for p in sorted({x["point"] for x, _ in pairs}):
                pp = [(x, y) for x, y in pairs if x["point"] == p]
                a = np.array([_outcome(x, "progression") for x, _ in pp])
                b = np.array([_outcome(y, "progression") for _, y in pp])
                d, lo, hi = mean_ci(b - a, seed=p)
                memory = {}
                for m in MEASURES[1:]:
                    ma = np.array([_outcome(x, m) for x, _ in pp])
                    mb = np.array([_outcome(y, m) for _, y in pp])
                    md, mlo, mhi = mean_ci(mb - ma, seed=p)
                    memory[m] = {
                        "reference": float(ma.mean()),
                        "arm": float(mb.mean()),
                        "diff": md,
                        "lo": mlo,
                        "hi": mhi,
                    }
                first = pp[0][1]
                comp.points.append(
                    PointDiff(
                        point=p,
                        parent_run_id=first["parent_run_id"],
                        parent_episode_id=first["parent_episode_id"],
                        branch_step=int(first["branch_step"]),
                        changes=json.loads(first["changes"] or "{}"),
                        n=len(pp),
                        reference=float(a.mean()),
                        arm=float(b.mean()),
                        diff=d,
                        lo=lo,
                        hi=hi,
                        memory=memory,
                    )
                )
            out.append(comp)
    return out


def branch_outcomes(con: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """The committed branch episodes of a store (a DuckDB connection of ``automem.trajectory.connect``)."""
    where = "" if run_id is None else "WHERE b.run_id = ?"
    cur = con.execute(BRANCH_OUTCOMES_SQL.format(where=where), [] if run_id is None else [run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def compare_branches(root: Any, run_id: str | None = None) -> list[ArmComparison]:
    """Every branch run of the store at ``root`` (or one), each arm against its run's reference arm."""
    from automem.branch.jobs import stored_plan
    from automem.trajectory import connect
    from automem.trajectory.reader import read_manifest

    con = connect(root)
    try:
        rows = branch_outcomes(con, run_id)
    finally:
        con.close()
    out: list[ArmComparison] = []
    for run in sorted({r["run_id"] for r in rows}):
        plan = stored_plan(read_manifest(root, run))
        arms = [a.name for a in plan.arms] if plan is not None else None
        out += compare_rows([r for r in rows if r["run_id"] == run], arms)
    return out


def format_comparisons(comps: list[ArmComparison]) -> str:
    """The comparisons as text (``automem branch compare``, ``automem diagnose``)."""
    lines: list[str] = []
    for c in comps:
        lines.append(f"run {c.run_id}: {c.arm} vs {c.reference}, {c.pairs} pairs (point x copy)")
        if c.unpaired:
            lines.append(f"  ({c.unpaired} episodes of {c.arm} have no committed {c.reference} partner)")
        for m, v in c.measures.items():
            lines.append(
                f"  {m:<19} {v['reference']:.3f} -> {v['arm']:.3f}  diff {v['diff']:+.3f} "
                f"[{v['lo']:+.3f}, {v['hi']:+.3f}]"
            )
        for p in c.points:
            lines.append(
                f"  point {p.point}: {p.parent_episode_id} at step {p.branch_step}: progression "
                f"{p.reference:.3f} -> {p.arm:.3f}  diff {p.diff:+.3f} [{p.lo:+.3f}, {p.hi:+.3f}] (n={p.n})"
            )
            for m, v in p.memory.items():
                lines.append(
                    f"    {m:<19} {v['reference']:.3f} -> {v['arm']:.3f}  diff {v['diff']:+.3f} "
                    f"[{v['lo']:+.3f}, {v['hi']:+.3f}]"
                )
    return "\n".join(lines)


__all__ = [
    "ArmComparison",
    "BRANCH_OUTCOMES_SQL",
    "PointDiff",
    "branch_outcomes",
    "compare_branches",
    "compare_rows",
    "format_comparisons",
    "mean_ci",
    "reference_arm",
]
