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
    """The worth of one memory turn: recorded - removed final progression over ``n`` paired copies."""

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


def credits_of(comparisons: list[ArmComparison]) -> list[Credit]:
    """The credits in a store's branch comparisons (the ``removed`` arm against ``recorded``, sign flipped)."""
    out = []
    for c in comparisons:
        if c.reference != RECORDED or c.arm != REMOVED:
            continue
        for p in c.points:
            turn = (p.changes.get("drop_turns") or ["?"])[0]
            out.append(
                Credit(
                    parent_run_id=p.parent_run_id,
                    parent_episode_id=p.parent_episode_id,
                    turn=turn,
                    branch_step=p.branch_step,
                    n=p.n,
                    recorded=p.reference,
                    removed=p.arm,
                    credit=0.0 - p.diff + 0.0,
                    lo=0.0 - p.hi + 0.0,
                    hi=0.0 - p.lo + 0.0,
                )
            )
    return out


def credits(root: Any, run_id: str | None = None) -> list[Credit]:
    """The memory credits of every credit run in the store at ``root`` (or of one run)."""
    return credits_of(compare_branches(root, run_id))


def format_credits(found: list[Credit]) -> str:
    """A table of credits."""
    lines = [
        f"{'episode':<28} {'turn':<10} {'n':>3} {'recorded':>9} {'removed':>8} {'credit':>8}  95% interval"
    ]
    for c in found:
        lines.append(
            f"{c.parent_episode_id:<28} {c.turn:<10} {c.n:>3} {c.recorded:>9.3f} {c.removed:>8.3f} "
            f"{c.credit:>+8.3f}  [{c.lo:+.3f}, {c.hi:+.3f}]"
        )
    return "\n".join(lines)


__all__ = [
    "RECORDED",
    "REMOVED",
    "Credit",
    "credit_plan",
    "credits",
    "credits_of",
    "format_credits",
    "is_credit_plan",
]
