"""Counterfactual replay of stored episodes (issue 19): ``restore`` puts a stored episode's game and memory back
exactly as they were at a step (``automem.branch.restore``), so a person can inspect the state and a branch can
play on from it."""

from automem.branch.restore import ENV_PACKAGES, Restored, RestoreError, memory_at, restore

__all__ = ["ENV_PACKAGES", "RestoreError", "Restored", "memory_at", "restore"]
