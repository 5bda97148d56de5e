"""Counterfactual replay of stored episodes (issue 19).

- ``restore`` puts a stored episode's game and memory back exactly as they were at a step
  (``automem.branch.restore``), so a person can inspect the state and a branch can play on from it.
- ``run_branches`` plays a ``BranchPlan`` (stored episodes from a step, under arms of changed settings, K copies)
  as a rollout whose episodes record their parent (``automem.branch.plan``, ``automem.branch.run``).
- ``compare_branches`` pairs each arm with the reference arm by point and copy (``automem.branch.compare``);
  ``credit_plan`` and ``credits`` measure what a memory turn was worth (``automem.branch.credit``).

Import the submodules that need the rollout library (``run``, ``jobs``, ``credit``) by name: this package's top is
imported by ``automem.rollout.config``.
"""

from automem.branch.plan import BranchArm, BranchPlan, BranchPoint, BranchStart
from automem.branch.restore import ENV_PACKAGES, Restored, RestoreError, episode_record, memory_at, restore

__all__ = [
    "ENV_PACKAGES",
    "BranchArm",
    "BranchPlan",
    "BranchPoint",
    "BranchStart",
    "RestoreError",
    "Restored",
    "episode_record",
    "memory_at",
    "restore",
]
