"""Hand-built episodes for the tests: stores with known answers for the diagnostics, the query and the report.

An episode is described step by step (observation, action, the text of its LOG and PLAN turns); the memory
operations in those turns run through the real memory code (``automem.memory.run_text``), so the op log's
``ok``, ``error_kind``, ``bytes_delta`` and ``output_chars`` are exactly what a live run would have stored. The
rows go through the trajectory writer (``automem.trajectory.EpisodeWriter``) as the agent's events, so they land
wherever the store's commit protocol puts them; nothing here knows the on-disk layout. Leave out the commit to get
an episode whose commit crashed just before its ``episodes`` record was written: its rows are in the store but
must stay invisible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.memory.ops import REGISTRY
from automem.memory.quotas import DEFAULT_QUOTAS, Quotas
from automem.memory.store import MemoryStore
from automem.memory.turn import run_text
from automem.trajectory.schemas import TABLES
from automem.trajectory.storage import Storage
from automem.trajectory.writer import EpisodeWriter

_PROMPT_TOKENS = 100
_LATENCY_S = 0.5
# Totals of the episode record that ``meta`` may set; env and seed are metadata, kept in the writer's meta.
_END_FIELDS = {f.name for f in fields(EpisodeEnd)} - {"episode_id", "memory_files", "env_id", "seed"}


@dataclass
class Step:
    """One step of a hand-built episode."""

    observation: str
    action: str = "noop"
    valid: bool = True
    log: Sequence[str] = ()
    """Completions of the LOG turns (memory operations, one per line)."""
    plan: Sequence[str] = ()
    """Completions of the PLAN turns (read-only operations)."""
    progression: float = 0.0
    state_key: str | None = None
    """Put in the step's info as the env would; None leaves it out (the observation fallback applies)."""
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class _CrashAtCommitRecord(Exception):
    pass


class _NoCommitRecord:
    """A storage that fails the write of the ``episodes`` record, as a crash at the commit point would."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write_table(self, path: str, table: pa.Table) -> None:
        if table.schema.equals(TABLES["episodes"]):
            raise _CrashAtCommitRecord(path)
        self._inner.write_table(path, table)


def write_episode(
    root: str | os.PathLike | Storage,
    run_id: str,
    episode_id: str,
    steps: Sequence[Step],
    *,
    attempt: int = 1,
    commit: bool = True,
    initial_files: dict[str, str] | None = None,
    quotas: Quotas = DEFAULT_QUOTAS,
    **meta: Any,
) -> dict[str, str]:
    """Write one episode through the trajectory writer and (when ``commit``) commit it. Returns its final files.

    Every model turn counts 100 prompt tokens, a quarter of its completion's characters as completion tokens
    (at least 1) and 0.5 s of model time; the episode's totals are their sums unless ``meta`` sets them.

    Args:
        root: the store.
        run_id, episode_id, attempt: the episode's key.
        steps: what happened, step by step.
        commit: commit the episode; False crashes the commit just before the ``episodes`` record (the commit
            point), so the rows are stored but not visible.
        initial_files: the scaffold's initial files (logged as WRITEs in phase ``init``).
        quotas: the memory quotas the operations ran under.
        meta: episode fields: metadata (env_id, seed, scaffold_id, memory_model, ...) and totals of
            ``EpisodeEnd`` (progression, prompt_tokens, completion_tokens, llm_seconds, ...); defaults fill the rest.
    """
    st = root if isinstance(root, Storage) else Storage(str(root))
    overrides = {k: meta.pop(k) for k in list(meta) if k in _END_FIELDS}
    meta = {
        "env_id": "corridor-v0",
        "seed": 0,
        "scaffold_id": "s0",
        "scaffold_content_id": "c0",
        "memory_model": "m",
        "action_model": "m",
        **meta,
    }
    writer = EpisodeWriter(st if commit else _NoCommitRecord(st), run_id, episode_id, attempt, meta)  # type: ignore[arg-type]
    store = MemoryStore.in_memory(quotas=quotas)
    store.on_record = writer.on_event
    for seq, (name, text) in enumerate((initial_files or {}).items()):
        store._log(0, "init", 0, seq, store.run_op("WRITE", [name, text]), read_only=False)
    turns: list[TurnEvent] = []
    op_errors = 0
    for t, s in enumerate(steps):
        for phase, texts in (("log", s.log), ("plan", s.plan)):
            for k, text in enumerate(texts):
                results = run_text(store, text, step=t, phase=phase, turn=k, read_only=phase == "plan")
                op_errors += sum(not r.ok for r in results)
                turns.append(_turn(episode_id, t, phase, k, text, [r.to_json() for r in results]))
                writer.on_event(turns[-1])
        turns.append(_turn(episode_id, t, "action", 0, s.action, [], action=s.action, valid=s.valid))
        writer.on_event(turns[-1])
        info = {"progression": s.progression, "step": t + 1, **s.info}
        if s.state_key is not None:
            info["state_key"] = s.state_key
        writer.on_event(
            StepEvent(
                episode_id=episode_id,
                step=t,
                observation=s.observation,
                action=s.action,
                action_index=0,
                action_text=s.action,
                action_valid=s.valid,
                reward=s.reward,
                terminated=t == len(steps) - 1,
                truncated=False,
                progression=s.progression,
                info=info,
            )
        )
    files = {n: store.backend.read(n) for n in sorted(store.index)}
    totals: dict[str, Any] = {
        "env_id": meta["env_id"],
        "seed": meta["seed"],
        "steps": len(steps),
        "episode_return": sum(s.reward for s in steps),
        "progression": steps[-1].progression if steps else 0.0,
        "terminated": True,
        "truncated": False,
        "invalid_actions": sum(not s.valid for s in steps),
        "turns": len(turns),
        "prompt_tokens": sum(t.prompt_tokens for t in turns),
        "completion_tokens": sum(t.completion_tokens for t in turns),
        "llm_seconds": sum(t.latency_s for t in turns),
        "env_seconds": 0.001 * len(steps),
        "wall_seconds": 1.0,
        "op_errors": op_errors,
    }
    end = EpisodeEnd(episode_id=episode_id, memory_files=files, **{**totals, **overrides})
    try:
        writer.commit(end, "You are a test agent. Operations: " + ", ".join(REGISTRY))
    except _CrashAtCommitRecord:
        pass
    return files


def _turn(
    episode_id: str,
    step: int,
    phase: str,
    turn: int,
    text: str,
    results: list[dict[str, Any]],
    *,
    action: str | None = None,
    valid: bool | None = None,
) -> TurnEvent:
    return TurnEvent(
        episode_id=episode_id,
        step=step,
        phase=phase,
        turn=turn,
        model="m",
        prompt_tokens=_PROMPT_TOKENS,
        prompt_tokens_est=_PROMPT_TOKENS,
        prefix_hash="h",
        completion=text,
        completion_tokens=max(1, len(text) // 4),
        latency_s=_LATENCY_S,
        constraint=None,
        results=results,
        messages=[{"role": "user", "content": f"step {step} {phase}"}],
        action=action,
        action_valid=valid,
    )


__all__ = ["Step", "write_episode"]
