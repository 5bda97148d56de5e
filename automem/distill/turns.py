"""The unit of Loop 2: one memory turn (phase ``log`` or ``plan``) of a committed episode, with the exact prompt the
agent saw.

The agent sends ``[system, *messages]``: the episode's static prefix (``episodes.system_prompt``, stored once per
episode) and the rest of the conversation (``turns.messages_json``, stored per turn without the system message;
``automem.agent.agent.Agent._memory_phase``). The operations each turn ran are the ``memory_ops`` rows of the same
(step, phase, turn). Only committed rows are read (``automem.trajectory.load``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from automem.memory.ops import READ_ONLY_OPS, REGISTRY
from automem.scaffold.io import from_yaml
from automem.trajectory import Storage, load, read_manifest

EpisodeKey = tuple[str, str, int]
"""(run_id, episode_id, attempt)."""
TurnKey = tuple[str, str, int, int, str, int]
"""(run_id, episode_id, attempt, step, phase, turn)."""

_TURN_COLUMNS = ["step", "phase", "turn", "messages_json", "completion", "n_ops", "n_op_errors", "constraint"]
_EPISODE_COLUMNS = ["env_id", "seed", "progression", "system_prompt"]
_OP_COLUMNS = ["step", "phase", "turn", "seq", "op", "args", "ok", "read_only", "error_kind", "output_chars"]


@dataclass(frozen=True)
class MemoryTurn:
    """One LOG or PLAN turn as a training candidate."""

    key: TurnKey
    messages: list[dict[str, Any]]
    """The chat the model saw: the system prompt first, then the stored conversation."""
    completion: str
    """What the model wrote, as stored."""
    n_ops: int
    n_op_errors: int
    constraint: str | None = None
    """The grammar the turn was decoded under (``turns.constraint``), None if it had none."""

    @property
    def episode(self) -> EpisodeKey:
        return self.key[:3]

    @property
    def phase(self) -> str:
        return self.key[4]


@dataclass
class Source:
    """What the strategies see: the candidate turns, their episodes' records and op logs, and each run's enabled
    operations (from its scaffold)."""

    turns: list[MemoryTurn]
    episodes: dict[EpisodeKey, dict[str, Any]]
    """env_id, seed, progression, system_prompt by episode."""
    ops: dict[EpisodeKey, list[dict[str, Any]]] = field(default_factory=dict)
    """Each episode's ``memory_ops`` rows (initial files included), in store order."""
    operations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each run's enabled operations; a run without a scaffold in its manifest has every registered one."""

    def enabled(self, run_id: str, phase: str) -> tuple[str, ...]:
        """The operations a turn of ``phase`` could run in ``run_id`` (PLAN: the read-only ones)."""
        ops = self.operations.get(run_id, tuple(REGISTRY))
        return tuple(o for o in ops if o in READ_ONLY_OPS) if phase == "plan" else ops


def run_operations(storage: Storage, run_id: str) -> tuple[str, ...]:
    """The operations the run's scaffold enabled (its manifest's ``scaffold_yaml``), or every registered one."""
    manifest = read_manifest(storage, run_id)
    text = (manifest or {}).get("scaffold_yaml")
    if not text:
        return tuple(REGISTRY)
    return tuple(from_yaml(text, f"the manifest of run {run_id}").operations)


def read_source(
    storage: Storage, run_id: str | None = None, phases: tuple[str, ...] = ("log", "plan")
) -> Source:
    """The committed memory turns of a store (or of one run), in key order, with what the strategies need.

    Args:
        storage: the store.
        run_id: only this run; None for every run.
        phases: which memory phases to take.
    """
    tables = load(
        storage,
        ("episodes", "turns", "memory_ops"),
        run_id=run_id,
        columns={"episodes": _EPISODE_COLUMNS, "turns": _TURN_COLUMNS, "memory_ops": _OP_COLUMNS},
    )
    episodes = {(r["run_id"], r["episode_id"], r["attempt"]): r for r in tables["episodes"].to_pylist()}
    ops: dict[EpisodeKey, list[dict[str, Any]]] = defaultdict(list)
    for r in tables["memory_ops"].to_pylist():
        ops[(r["run_id"], r["episode_id"], r["attempt"])].append(r)
    turns: list[MemoryTurn] = []
    for r in tables["turns"].to_pylist():
        ep = (r["run_id"], r["episode_id"], r["attempt"])
        if r["phase"] not in phases or ep not in episodes:
            continue
        system = {"role": "system", "content": episodes[ep]["system_prompt"] or ""}
        turns.append(
            MemoryTurn(
                key=(*ep, r["step"], r["phase"], r["turn"]),
                messages=[system, *json.loads(r["messages_json"] or "[]")],
                completion=r["completion"] or "",
                n_ops=r["n_ops"] or 0,
                n_op_errors=r["n_op_errors"] or 0,
                constraint=r.get("constraint") or None,
            )
        )
    turns.sort(key=lambda t: (*t.key[:4], {"log": 0, "plan": 1}[t.key[4]], t.key[5]))
    runs = sorted({ep[0] for ep in episodes})
    return Source(turns, episodes, dict(ops), {run: run_operations(storage, run) for run in runs})
