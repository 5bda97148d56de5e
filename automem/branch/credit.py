"""Memory credit: what one memory decision was worth, by playing on with and without it.

For a memory turn ``S:PHASE:K`` of a stored episode, a credit run branches the episode at step ``S+1`` (the game
after step S's action, unchanged) twice: ``recorded``, the memory as the episode had it, and ``removed``, the
memory as if that turn's operations had never run (``memory_at(..., drop_turns=)``: the turn's writes are left out,
every other write replayed). Both are played on for the same number of steps, ``copies`` times each with the
same sampling seeds. The turn's credit is the mean paired difference of final progression, recorded - removed,
with a 95% bootstrap interval over copies: positive when the turn's memory helped the agent play on.

The turn's own step's action is kept as recorded in both arms; what is measured is the worth of what the turn left
in memory for the steps after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automem.branch.compare import ArmComparison, compare_branches
from automem.branch.plan import TURN_KEY, BranchArm, BranchPlan, BranchPoint

RECORDED, REMOVED = "recorded", "removed"


def credit_plan(
    parent_out: str,
    parent_run: str,
    episode: str,
    turns: list[str],
    *,
    copies: int,
    sampling_seed: int = 0,
) -> BranchPlan:
    """The branch plan that credits ``turns`` (``STEP:PHASE:TURN``) of one stored episode.

    Raises:
        ValueError: a malformed turn, or one given twice.
    """
    if len(set(turns)) != len(turns):
        raise ValueError(f"a turn is given twice in {turns}")
    points = []
    for key in turns:
        m = TURN_KEY.match(key)
        if not m:
            raise ValueError(f"bad memory turn {key!r}: write STEP:PHASE:TURN, e.g. 5:log:0")
        points.append(BranchPoint(episode=episode, step=int(m[1]) + 1, drop_turns=[key]))
    return BranchPlan(
        parent_out=parent_out,
        parent_run=parent_run,
        points=points,
        arms=[BranchArm(name=RECORDED), BranchArm(name=REMOVED, drop=True)],
        copies=copies,
        sampling_seed=sampling_seed,
    )


def is_credit_plan(plan: BranchPlan) -> bool:
    """A plan made by ``credit_plan`` (arms ``recorded`` and ``removed``, one dropped turn per point)."""
    return [a.name for a in plan.arms] == [RECORDED, REMOVED] and all(
        len(p.drop_turns) == 1 for p in plan.points
    )


@dataclass(frozen=True)
class Credit:
    """The worth of one memory turn over ``n`` paired copies, by ``measure``: how much better the rest of the game
    went with the turn than without it (``recorded`` and ``removed`` are the measure's means)."""

    parent_run_id: str
    parent_episode_id: str
    turn: str
    branch_step: int
    n: int
    recorded: float
    removed: float
    credit: float
    lo: float
    hi: float
    measure: str = "progression"


CREDIT_MEASURES = {"progression": 1.0, "op_errors_per_step": -1.0}
"""What a credit can be measured in, with the sign of "better": more progression, fewer failed memory operations per
step (with the turn's memory the agent fails fewer of its later operations: the turn was worth that many)."""


def _zero(x: float) -> float:
    return x + 0.0  # no "-0.000" in tables


def credits_of(comparisons: list[ArmComparison], measure: str = "progression") -> list[Credit]:
    """The credits in a store's branch comparisons (the ``removed`` arm against ``recorded``), in ``measure``.

    Raises:
        ValueError: a measure that is not one of ``CREDIT_MEASURES``.
    """
    if measure not in CREDIT_MEASURES:
        raise ValueError(f"unknown credit measure {measure!r}; known: {', '.join(CREDIT_MEASURES)}")
    sign = CREDIT_MEASURES[measure]
    out = []
    for c in comparisons:
        if c.reference != RECORDED or c.arm != REMOVED:
            continue
        for p in c.points:
            if measure == "progression":
                ref, arm, diff, lo, hi = p.reference, p.arm, p.diff, p.lo, p.hi
            else:
                v = p.memory[measure]
                ref, arm, diff, lo, hi = v["reference"], v["arm"], v["diff"], v["lo"], v["hi"]
            # diff is removed - recorded; the credit is sign * (recorded - removed)
            bounds = sorted((-sign * lo, -sign * hi))
            out.append(
                Credit(
                    parent_run_id=p.parent_run_id,
                    parent_episode_id=p.parent_episode_id,
                    turn=(p.changes.get("drop_turns") or ["?"])[0],
                    branch_step=p.branch_step,
                    n=p.n,
                    recorded=ref,
                    removed=arm,
                    credit=_zero(-sign * diff),
                    lo=_zero(bounds[0]),
                    hi=_zero(bounds[1]),
                    measure=measure,
                )
            )
    return out


def credits(root: Any, run_id: str | None = None, measure: str = "progression") -> list[Credit]:
    """The memory credits of every credit run in the store at ``root`` (or of one run), in ``measure``."""
    return credits_of(compare_branches(root, run_id), measure)


def format_credits(found: list[Credit]) -> str:
    """A table of credits."""
    if found:
        better = "more" if CREDIT_MEASURES[found[0].measure] > 0 else "fewer"
        lines = [f"credit in {found[0].measure} ({better} is better): with the turn vs without it"]
    else:
        lines = []
    lines += [
        f"{'episode':<28} {'turn':<10} {'n':>3} {'recorded':>9} {'removed':>8} {'credit':>8}  95% interval"
    ]
    for c in found:
        lines.append(
            f"{c.parent_episode_id:<28} {c.turn:<10} {c.n:>3} {c.recorded:>9.3f} {c.removed:>8.3f} "
            f"{c.credit:>+8.3f}  [{c.lo:+.3f}, {c.hi:+.3f}]"
        )
    return "\n".join(lines)


__all__ = [
    "CREDIT_MEASURES",
    "RECORDED",
    "REMOVED",
    "Credit",
    "credit_plan",
    "credits",
    "credits_of",
    "format_credits",
    "is_credit_plan",
]
