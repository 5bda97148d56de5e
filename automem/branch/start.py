"""The start of one branch episode: the parent's game and memory at the branch step, with the arm's changes."""

from __future__ import annotations

from collections.abc import Sequence

from automem.agent.agent import EpisodeStart
from automem.branch.plan import BranchStart
from automem.branch.restore import RestoreError, restore
from automem.envs.base import TextEnv
from automem.memory.grammar import parse
from automem.memory.ops import ALL_OPS
from automem.memory.store import MemoryStore
from automem.memory.turn import execute


def edit_memory(files: dict[str, str], edits: Sequence[str]) -> dict[str, str]:
    """``files`` after the memory operations ``edits`` (one or more per string, in the operation grammar).

    Raises:
        RestoreError: an edit that does not parse or fails (names the operation and the error).
    """
    if not edits:
        return dict(files)
    store = MemoryStore.in_memory(files)
    for text in edits:
        for result in execute(store, parse(text, ALL_OPS), phase="edit"):
            if not result.ok:
                shown = result.raw or " ".join([result.op or "?", *result.args])
                raise RestoreError(f"memory edit {shown[:80]!r} failed: {result.error}")
    backend = store.backend
    return {name: backend.read(name) for name in sorted(store.index)}


def branch_start(start: BranchStart) -> tuple[TextEnv, EpisodeStart]:
    """The live game positioned at ``start.step`` and where the agent picks up (``Agent.run_episode(start=)``).

    Raises:
        RestoreError: the parent cannot be restored there (``automem.branch.restore``), or a memory edit fails.
    """
    r = restore(
        start.parent_out,
        start.parent_run,
        start.parent_episode,
        start.step,
        attempt=start.parent_attempt,
        drop_turns=start.drop_turns,
    )
    try:
        memory = edit_memory(r.memory, start.memory_edit)
    except BaseException:
        r.close()
        raise
    return r.env, EpisodeStart(
        step=start.step,
        observation=r.observation,
        info=r.info,
        memory=memory,
        last_action=r.actions[-1] if r.actions else None,
    )


__all__ = ["branch_start", "edit_memory"]
