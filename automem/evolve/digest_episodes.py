"""What a digest (:mod:`automem.evolve.digest`) is made of: the selected episodes, each with its op log, steps
and final memory files from the committed views, measured with the diagnostics' own definitions (``analyse_ops``,
``analyse_steps``) and how it ended (a death, a stall, or neither: see the digest's docstring); and the problem
items sampled from them, deterministically for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from automem.diagnostics.actions import analyse_steps, state_key_of, strip_clock
from automem.diagnostics.memory_quality import MemoryQuality, analyse_ops, op_order

if TYPE_CHECKING:
    import duckdb

STALL_STEPS = 3
"""An episode stalled when at least this many of its last assessed actions were unproductive."""

_OPS_SQL = """
SELECT run_id, episode_id, attempt, step, phase, turn, seq, op, args, ok, read_only, error_kind, output_chars
FROM memory_ops SEMI JOIN _digest_keys USING (run_id, episode_id, attempt)
"""
_STEPS_SQL = """
SELECT run_id, episode_id, attempt, step, observation, action, action_valid, progression, info_json
FROM steps SEMI JOIN _digest_keys USING (run_id, episode_id, attempt) ORDER BY step
"""
_FILES_SQL = """
SELECT run_id, episode_id, attempt, name, content, bytes, lines
FROM memory_files SEMI JOIN _digest_keys USING (run_id, episode_id, attempt) ORDER BY name
"""

Key = tuple[str, str, int]


@dataclass
class Episode:
    """One episode's rows and measures."""

    key: Key
    meta: dict[str, Any]
    ops: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    files: list[dict[str, Any]]
    mq: MemoryQuality
    unproductive: int
    assessed: int
    invalid: int
    unproductive_steps: list[int]
    end: str | None  # "death", "stall" or None

    @property
    def name(self) -> str:
        run, ep, attempt = self.key
        return f"{run}/{ep}" + (f"#{attempt}" if attempt != 1 else "")

    @property
    def progression(self) -> float:
        return float(self.meta.get("progression") or 0.0)


def _sql_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return con.sql(sql).to_arrow_table().to_pylist()


def _key(row: Mapping[str, Any]) -> Key:
    return (row["run_id"], row["episode_id"], int(row["attempt"]))


def _trailing_unproductive(steps: list[dict[str, Any]]) -> list[int]:
    """Steps whose action changed nothing, in the trailing run of such actions (same rule as analyse_steps)."""
    keys = [state_key_of(s.get("info_json")) for s in steps]
    if steps and all(k is not None for k in keys):
        pairs = [
            (steps[t]["step"], steps[t]["action_valid"], keys[t - 1] == keys[t]) for t in range(1, len(steps))
        ]
    elif steps and all(s.get("observation") is not None for s in steps):
        obs = [strip_clock(s["observation"]) for s in steps]
        pairs = [
            (steps[t]["step"], steps[t]["action_valid"], obs[t] == obs[t + 1]) for t in range(len(steps) - 1)
        ]
    else:
        return []
    out: list[int] = []
    for step, valid, same in reversed(pairs):
        if valid is False:
            continue
        if not same:
            break
        out.append(step)
    return sorted(out)


def load_episodes(
    con: duckdb.DuckDBPyConnection, run_id: str | None, episodes: Sequence[Key] | None
) -> list[Episode]:
    """The selected committed episodes with their rows and measures, sorted by key."""
    metas = _sql_rows(
        con, "SELECT * EXCLUDE (system_prompt) FROM episodes ORDER BY run_id, episode_id, attempt"
    )
    if run_id is not None:
        metas = [m for m in metas if m["run_id"] == run_id]
    if episodes is not None:
        wanted = {(str(r), str(e), int(a)) for r, e, a in episodes}
        have = {_key(m) for m in metas}
        missing = sorted(wanted - have)
        if missing:
            shown = ", ".join(f"{r}/{e}#{a}" for r, e, a in missing[:5])
            raise ValueError(
                f"no committed episode {shown}"
                + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            )
        metas = [m for m in metas if _key(m) in wanted]
    if not metas:
        return []
    keys = pa.Table.from_pylist(
        [{"run_id": k[0], "episode_id": k[1], "attempt": k[2]} for k in map(_key, metas)]
    )
    con.register("_digest_keys", keys)
    try:
        by_key: dict[str, dict[Key, list[dict[str, Any]]]] = {}
        for name, sql in (("ops", _OPS_SQL), ("steps", _STEPS_SQL), ("files", _FILES_SQL)):
            grouped: dict[Key, list[dict[str, Any]]] = {}
            for row in _sql_rows(con, sql):
                grouped.setdefault(_key(row), []).append(row)
            by_key[name] = grouped
    finally:
        con.unregister("_digest_keys")
    out = []
    for meta in metas:
        key = _key(meta)
        ops = sorted(by_key["ops"].get(key, []), key=op_order)
        steps = sorted(by_key["steps"].get(key, []), key=lambda s: s["step"])
        aq = analyse_steps(steps)
        trailing = _trailing_unproductive(steps)
        end = None
        if meta.get("status") == "terminated" and float(meta.get("progression") or 0.0) < 1.0:
            end = "death"
        elif len(trailing) >= STALL_STEPS:
            end = "stall"
        out.append(
            Episode(
                key=key,
                meta=meta,
                ops=ops,
                steps=steps,
                files=by_key["files"].get(key, []),
                mq=analyse_ops(ops),
                unproductive=aq.unproductive,
                assessed=aq.assessed,
                invalid=aq.invalid,
                unproductive_steps=trailing,
                end=end,
            )
        )
    return out


# -- replay: outputs and error messages -------------------------------------------------------------------------


END_STEPS = 3
"""How many steps before a death or a stall are shown."""

KINDS = ("failed_op", "redundant_write", "empty_read", "death", "stall")
"""Kinds of problem turns, in the order the sampler takes them."""


@dataclass
class Item:
    """A problem item: one turn, or the last steps of an episode."""

    kinds: list[str]
    episode: Episode
    step: int
    phase: str | None = None  # None: an episode-end window
    turn: int = 0

    @property
    def ident(self) -> tuple:
        return (self.episode.key, self.step, self.phase or "~end", self.turn)


def window_start(ep: Episode) -> int:
    """First step of the window shown before an episode's end."""
    return max(ep.steps[0]["step"], ep.steps[-1]["step"] - END_STEPS + 1)


def problem_items(eps: list[Episode]) -> list[Item]:
    """Every problem item: one per turn, with all the kinds it shows, or one per death or stall.

    A problem turn within the steps shown before a death or a stall is part of that item, not one of its own.
    """
    items: dict[tuple, Item] = {}
    for ep in eps:
        redundant = set(ep.mq.redundant_ops)
        window = Item([ep.end], ep, ep.steps[-1]["step"]) if ep.end and ep.steps else None
        for i, row in enumerate(ep.ops):
            if row["phase"] == "init":
                continue
            kinds = []
            if not row["ok"]:
                kinds.append("failed_op")
            if i in redundant:
                kinds.append("redundant_write")
            empty_search = row["ok"] and row["op"] == "SEARCH" and not row["output_chars"]
            missing_read = not row["ok"] and row["op"] in ("READ", "TAIL") and row["error_kind"] == "missing"
            if empty_search or missing_read:
                kinds.append("empty_read")
            if not kinds:
                continue
            if window is not None and row["step"] >= window_start(ep):
                item = window
            else:
                item = Item([], ep, row["step"], row["phase"], row["turn"])
                item = items.setdefault(item.ident, item)
            item.kinds.extend(k for k in kinds if k not in item.kinds)
        if window is not None:
            items[window.ident] = window
    for item in items.values():
        item.kinds.sort(key=KINDS.index)
    return sorted(items.values(), key=lambda it: it.ident)


def sample_items(items: list[Item], max_turns: int, seed: int) -> list[Item]:
    """Up to ``max_turns`` items, taking the kinds in turn and, within a kind, the episodes in turn."""
    rng = random.Random(seed)
    queues: dict[str, list[Item]] = {}
    for kind in KINDS:
        of_kind = sorted((it for it in items if kind in it.kinds), key=lambda it: it.ident)
        by_episode: dict[Key, list[Item]] = {}
        for it in of_kind:
            by_episode.setdefault(it.episode.key, []).append(it)
        groups = [by_episode[k] for k in sorted(by_episode)]
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
        queue: list[Item] = []
        for k in range(max((len(g) for g in groups), default=0)):
            queue.extend(g[k] for g in groups if k < len(g))
        queues[kind] = queue
    chosen: list[Item] = []
    seen: set[tuple] = set()
    while len(chosen) < max_turns and any(queues.values()):
        for kind in KINDS:
            queue = queues[kind]
            while queue and queue[0].ident in seen:
                queue.pop(0)
            if queue and len(chosen) < max_turns:
                it = queue.pop(0)
                seen.add(it.ident)
                chosen.append(it)
    return chosen


# -- rendering --------------------------------------------------------------------------------------------------
