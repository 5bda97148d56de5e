"""Hand-built episodes for tests, demos of the report, and known-answer checks of the diagnostics.

An episode is described step by step (observation, action, the text of its LOG and PLAN turns); the memory
operations in those turns run through the real memory code (``automem.memory.run_text``), so the op log's
``ok``, ``error_kind``, ``bytes_delta`` and ``output_chars`` are exactly what a live run would have stored. The rows
are written in the store's committed layout (``tables/<table>/<run>/<episode>...parquet``); leave out the commit
to get an episode whose rows are on disk but must stay invisible.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from automem.memory.ops import REGISTRY
from automem.memory.quotas import DEFAULT_QUOTAS, Quotas
from automem.memory.results import OpRecord
from automem.memory.store import MemoryStore
from automem.memory.turn import run_text
from automem.trajectory.schemas import TABLES
from automem.trajectory.storage import Storage


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
    """Write one episode's rows (and, when ``commit``, its episodes record). Returns its final memory files.

    Args:
        root: the store.
        run_id, episode_id, attempt: the episode's key.
        steps: what happened, step by step.
        commit: write the ``episodes`` record that makes the rows visible.
        initial_files: the scaffold's initial files (logged as WRITEs in phase ``init``).
        quotas: the memory quotas the operations ran under.
        meta: episode fields (env_id, seed, scaffold_id, memory_model, ...); defaults fill the rest.
    """
    st = root if isinstance(root, Storage) else Storage(str(root))
    key = {"run_id": run_id, "episode_id": episode_id, "attempt": attempt}
    log: list[OpRecord] = []
    store = MemoryStore.in_memory(quotas=quotas)
    store.on_record = log.append
    for seq, (name, text) in enumerate((initial_files or {}).items()):
        store._log(0, "init", 0, seq, store.run_op("WRITE", [name, text]), read_only=False)
    step_rows, turn_rows = [], []
    for t, s in enumerate(steps):
        for phase, texts in (("log", s.log), ("plan", s.plan)):
            for k, text in enumerate(texts):
                results = run_text(store, text, step=t, phase=phase, turn=k, read_only=phase == "plan")
                turn_rows.append(_turn(key, t, phase, k, text, results))
        turn_rows.append(
            {**_turn(key, t, "action", 0, s.action, []), "action": s.action, "action_valid": s.valid}
        )
        info = {"progression": s.progression, "step": t + 1, **s.info}
        if s.state_key is not None:
            info["state_key"] = s.state_key
        step_rows.append(
            {
                **key,
                "step": t,
                "observation": s.observation,
                "action": s.action,
                "action_index": 0,
                "action_text": s.action,
                "action_valid": s.valid,
                "reward": s.reward,
                "terminated": t == len(steps) - 1,
                "truncated": False,
                "progression": s.progression,
                "info_json": json.dumps(info, sort_keys=True),
            }
        )
    files = {n: store.backend.read(n) for n in sorted(store.index)}
    ops = [{**key, **r.to_dict()} for r in log]
    _write(st, "steps", run_id, f"{episode_id}-p00000", step_rows)
    _write(st, "turns", run_id, f"{episode_id}-p00000", turn_rows)
    _write(st, "memory_ops", run_id, f"{episode_id}-p00000", ops)
    file_rows = [
        {**key, "name": n, "content": c, "bytes": len(c.encode()), "lines": c.count("\n")}
        for n, c in files.items()
    ]
    _write(st, "memory_files", run_id, episode_id, file_rows)
    if commit:
        _write(st, "episodes", run_id, episode_id, [_episode(key, steps, turn_rows, ops, meta)])
    return files


def _turn(key: dict, step: int, phase: str, turn: int, text: str, results: list) -> dict[str, Any]:
    return {
        **key,
        "step": step,
        "phase": phase,
        "turn": turn,
        "model": "m",
        "prompt_tokens": 100,
        "prompt_tokens_est": 100,
        "prefix_hash": "h",
        "messages_json": json.dumps([{"role": "user", "content": f"step {step} {phase}"}]),
        "completion": text,
        "completion_tokens": max(1, len(text) // 4),
        "latency_s": 0.5,
        "constraint": None,
        "n_ops": len(results),
        "n_op_errors": sum(not r.ok for r in results),
        "action": None,
        "action_valid": None,
    }


def _episode(key: dict, steps: Sequence[Step], turns: list[dict], ops: list[dict], meta: dict) -> dict:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    row = {
        **key,
        "env_id": "corridor-v0",
        "seed": 0,
        "scaffold_id": "s0",
        "scaffold_content_id": "c0",
        "memory_model": "m",
        "action_model": "m",
        "status": "terminated",
        "progression": steps[-1].progression if steps else 0.0,
        "episode_return": sum(s.reward for s in steps),
        "steps": len(steps),
        "invalid_actions": sum(not s.valid for s in steps),
        "turns": len(turns),
        "prompt_tokens": sum(t["prompt_tokens"] for t in turns),
        "completion_tokens": sum(t["completion_tokens"] for t in turns),
        "llm_seconds": sum(t["latency_s"] for t in turns),
        "env_seconds": 0.001 * len(steps),
        "wall_seconds": 1.0,
        "op_errors": sum(not o["ok"] for o in ops if o["phase"] != "init"),
        "system_prompt": "You are a test agent. Operations: " + ", ".join(REGISTRY),
        "started_at": now,
        "committed_at": now,
    }
    row.update(meta)
    return row


def _write(st: Storage, table: str, run_id: str, stem: str, rows: list[dict]) -> None:
    st.write_table(
        st.path("tables", table, run_id, f"{stem}.parquet"), pa.Table.from_pylist(rows, TABLES[table])
    )


__all__ = ["Step", "write_episode"]
