"""Run a branch plan as a rollout: ``run_branches`` is ``run_rollout`` with ``RolloutConfig.branch`` set.

    from automem.branch import BranchArm, BranchPlan, BranchPoint
    from automem.branch.run import run_branches
    plan = BranchPlan(parent_out="runs", parent_run="crafter-v0-20250101", copies=4,
                      points=[BranchPoint(episode="000000-crafter-v0-s0", step=12)],
                      arms=[BranchArm(name="control"), BranchArm(name="change", memory_edit=['WRITE plan.md "wood"'])])
    result = run_branches(plan, out="branches", run_id="b1", horizon=20)

The same call again with the same run id resumes the run (committed branch episodes are kept; the plan must be the
same); the branches play in parallel on the executor's runners and commit exactly once like any episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automem.branch.jobs import stored_plan
from automem.branch.plan import BranchArm, BranchPlan, BranchPoint
from automem.rollout import RolloutConfig, RolloutError, run_rollout
from automem.rollout.lifecycle import RolloutResult
from automem.trajectory.reader import read_manifest
from automem.trajectory.storage import Storage


def simple_plan(
    parent_out: str,
    parent_run: str,
    episodes: list[str],
    step: int,
    change: BranchArm | None,
    *,
    copies: int = 1,
    control: bool = True,
    sampling_seed: int = 0,
) -> BranchPlan:
    """Branch ``episodes`` at ``step`` under ``change`` (named ``change``), with the unchanged original (``control``)
    as the reference arm unless ``control`` is False.

    Raises:
        ValueError: neither a change nor a control to play.
    """
    arms = [BranchArm(name="control")] if control else []
    if change is not None:
        arms.append(change)
    if not arms:
        raise ValueError(
            "nothing to play: give a change (--scaffold, --model, --memory-model, --memory-edit) or "
            "keep the control"
        )
    return BranchPlan(
        parent_out=parent_out,
        parent_run=parent_run,
        points=[BranchPoint(episode=e, step=step) for e in episodes],
        arms=arms,
        copies=copies,
        sampling_seed=sampling_seed,
    )


def run_branches(
    plan: BranchPlan,
    *,
    out: str,
    run_id: str,
    horizon: int,
    settings: dict[str, Any] | None = None,
    on_progress: Callable[[Any], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Play ``plan`` as the run ``run_id`` in ``out`` (resumed if it exists), ``horizon`` steps from each point.

    Args:
        settings: other ``RolloutConfig`` fields (endpoint, concurrency, executor, ...).

    Raises:
        RolloutError, RunBusy, RunFailed: as ``run_rollout``.
    """
    manifest = read_manifest(Storage(out), run_id)
    fields: dict[str, Any] = {**(settings or {}), "out": out, "run_id": run_id}
    if manifest is None:
        fields.update(branch=plan, max_steps=horizon)
    else:  # a resume: the run's plan and horizon come from its manifest and must be the ones asked for
        stored = stored_plan(manifest)
        stored_horizon = (manifest.get("config") or {}).get("max_steps")
        if stored is None or not _same_plan(plan, stored) or stored_horizon != horizon:
            raise RolloutError(
                f"run {run_id} already exists in {out} with another plan or horizon; pick a new run id "
                "(the same command resumes only the same branches)"
            )
    config = RolloutConfig.model_validate(fields)
    return run_rollout(config, resume=manifest is not None, on_progress=on_progress, say=say)


def _same_plan(given: BranchPlan, stored: BranchPlan) -> bool:
    """``given`` is ``stored`` once the attempts ``stored`` resolved are filled into the points left open."""
    if len(given.points) != len(stored.points):
        return False
    points = [
        g if g.attempt is not None else g.model_copy(update={"attempt": s.attempt})
        for g, s in zip(given.points, stored.points, strict=True)
    ]
    return given.model_copy(update={"points": points}) == stored


__all__ = ["run_branches", "simple_plan"]
