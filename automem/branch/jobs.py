"""A branch plan as episode jobs: every (point, arm, copy) a job whose ``branch`` says where it starts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from automem.branch.plan import BranchPlan, BranchStart
from automem.branch.restore import RestoreError, episode_record
from automem.rollout.jobs import EpisodeJob
from automem.scaffold.io import ScaffoldError, content_id, from_yaml
from automem.scaffold.schema import Scaffold
from automem.trajectory.reader import read_manifest
from automem.trajectory.storage import Storage
from automem.trajectory.writer import check_id


def parent_scaffold(parent_out: str, run_id: str, record: dict[str, Any]) -> Scaffold:
    """The scaffold a stored episode was played with (its run's manifest), checked against its record.

    Raises:
        RestoreError: the run has no manifest with a scaffold, or the episode was played with another one.
    """
    manifest = read_manifest(parent_out, run_id) or {}
    text = manifest.get("scaffold_yaml")
    if not text:
        raise RestoreError(f"run {run_id} has no scaffold in its manifest: give the branch a --scaffold")
    try:
        scaffold = from_yaml(text, f"the manifest of run {run_id}")
    except ScaffoldError as exc:
        raise RestoreError(f"run {run_id}: its manifest's scaffold does not load here: {exc}") from None
    want = record.get("scaffold_content_id")
    if want and content_id(scaffold) != want:
        raise RestoreError(
            f"episode {record['episode_id']} was played with scaffold {want}, not its run's {content_id(scaffold)}"
        )
    return scaffold


def make_branch_jobs(
    plan: BranchPlan, *, run_id: str, horizon: int
) -> tuple[str, list[EpisodeJob], BranchPlan]:
    """The env id and the jobs of a branch run (``horizon`` steps from each point, per arm and copy), and the plan
    with every point's committed attempt filled in (what the manifest records).

    Raises:
        RestoreError: a parent episode that is unknown, not committed, of another env than the others, or too
            short for its step; a drop of a turn that is not before the step.
    """
    check_id("run id", run_id)
    records: dict[str, dict[str, Any]] = {}
    for p in plan.points:
        if p.episode not in records:
            records[p.episode] = episode_record(plan.parent_out, plan.parent_run, p.episode)
    envs = sorted({r["env_id"] for r in records.values()})
    if len(envs) != 1:
        raise RestoreError(
            f"the points are episodes of several envs ({', '.join(envs)}): branch them in one run each"
        )
    scaffolds: dict[str, Scaffold] = {}
    jobs: list[EpisodeJob] = []
    for i, point in enumerate(plan.points):
        rec = records[point.episode]
        if point.attempt is not None and point.attempt != rec["attempt"]:
            raise RestoreError(
                f"episode {point.episode} committed attempt {rec['attempt']}, not {point.attempt}"
            )
        n = int(rec["steps"] or 0)
        if not 0 <= point.step < n:
            credit = " (a credit branches at the step after its turn: the last step's turns have no steps after them)"
            raise RestoreError(
                f"step {point.step} is outside episode {point.episode}, which has {n} steps: give a step from "
                f"0 to {n - 1}" + (credit if point.drop_turns and point.step == n else "")
            )
        if point.episode not in scaffolds:
            scaffolds[point.episode] = parent_scaffold(plan.parent_out, plan.parent_run, rec)
        for arm in plan.arms:
            action_model = arm.model or rec["action_model"]
            memory_model = arm.memory_model or (arm.model if arm.model else rec["memory_model"])
            for k in range(plan.copies):
                start = BranchStart(
                    parent_out=plan.parent_out,
                    parent_run=plan.parent_run,
                    parent_episode=point.episode,
                    parent_attempt=int(rec["attempt"]),
                    step=point.step,
                    sampling_seed=plan.sampling_seed + k,
                    drop_turns=tuple(point.drop_turns) if arm.drop else (),
                    memory_edit=tuple(arm.memory_edit),
                )
                jobs.append(
                    EpisodeJob(
                        run_id=run_id,
                        episode_id=check_id("episode id", plan.episode_id(i, arm.name, k)),
                        env_id=rec["env_id"],
                        seed=int(rec["seed"]),
                        scaffold=arm.scaffold or scaffolds[point.episode],
                        memory_model=memory_model,
                        action_model=action_model,
                        max_steps=point.step + horizon,
                        branch=start,
                    )
                )
    resolved = [p.model_copy(update={"attempt": int(records[p.episode]["attempt"])}) for p in plan.points]
    return envs[0], jobs, plan.model_copy(update={"points": resolved})


def branch_rows(plan: BranchPlan, run_id: str) -> list[dict[str, Any]]:
    """One row per branch episode of a run: its point, arm, copy, parent keys and what changed (the
    ``branches`` view)."""
    rows = []
    for i, point in enumerate(plan.points):
        for arm in plan.arms:
            changes = arm.changes()
            if arm.drop and point.drop_turns:
                changes["drop_turns"] = list(point.drop_turns)
            elif arm.drop:
                changes.pop("drop", None)
            for k in range(plan.copies):
                rows.append(
                    {
                        "run_id": run_id,
                        "episode_id": plan.episode_id(i, arm.name, k),
                        "point": i,
                        "arm": arm.name,
                        "copy": k,
                        "sampling_seed": plan.sampling_seed + k,
                        "parent_out": plan.parent_out,
                        "parent_run_id": plan.parent_run,
                        "parent_episode_id": point.episode,
                        "parent_attempt": point.attempt,
                        "branch_step": point.step,
                        "control": not changes,
                        "changes": changes,
                    }
                )
    return rows


BRANCHES_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("episode_id", pa.string()),
        ("point", pa.int32()),
        ("arm", pa.string()),
        ("copy", pa.int32()),
        ("sampling_seed", pa.int64()),
        ("parent_out", pa.string()),
        ("parent_run_id", pa.string()),
        ("parent_episode_id", pa.string()),
        ("parent_attempt", pa.int32()),
        ("branch_step", pa.int32()),
        ("control", pa.bool_()),
        ("changes", pa.string()),
    ]
)
"""The ``branches`` view of ``automem query``: one row per planned branch episode (join ``episodes`` on run_id
and episode_id for its outcome; ``changes`` is JSON, ``{}`` for a control)."""


def stored_plan(manifest: dict[str, Any] | None) -> BranchPlan | None:
    """The branch plan a run's manifest records, or None for an ordinary run."""
    data = ((manifest or {}).get("config") or {}).get("branch")
    return None if not data else BranchPlan.model_validate(data)


def branches_table(st: Storage, run_ids: Iterable[str]) -> pa.Table:
    """The ``branches`` rows of the branch runs among ``run_ids`` (from their manifests; an ordinary run has none)."""
    rows: list[dict[str, Any]] = []
    for run_id in run_ids:
        plan = stored_plan(read_manifest(st, run_id))
        if plan is not None:
            rows += [
                {**r, "changes": json.dumps(r["changes"], sort_keys=True)} for r in branch_rows(plan, run_id)
            ]
    return pa.Table.from_pylist(rows, schema=BRANCHES_SCHEMA)


__all__ = [
    "BRANCHES_SCHEMA",
    "branch_rows",
    "branches_table",
    "stored_plan",
    "make_branch_jobs",
    "parent_scaffold",
]
