"""Per-episode diagnostics: one row per committed episode, with the counts every measure is built from.

Reads the store through the committed views (``automem.trajectory.connect``), replays each episode's op log
(``memory_quality.analyse_ops``) and compares its states (``actions.analyse_steps``). The row holds counts, not
rates, so that groups of episodes aggregate as ratios of sums (``summary.MEASURES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from automem.diagnostics.actions import analyse_steps
from automem.diagnostics.memory_quality import MemoryQuality, analyse_ops
from automem.diagnostics.series import episode_series
from automem.memory.results import ERROR_KINDS
from automem.trajectory import PHASE_ORDER_SQL

if TYPE_CHECKING:
    import duckdb

KEY = ("run_id", "episode_id", "attempt")
META = ("env_id", "seed", "scaffold_id", "scaffold_content_id", "memory_model", "action_model", "status")

_EPISODES_SQL = f"""
SELECT {", ".join(KEY + META)}, progression, steps, prompt_tokens, completion_tokens, llm_seconds
FROM episodes ORDER BY run_id, episode_id, attempt
"""
_OPS_SQL = f"""
SELECT run_id, episode_id, attempt, step, phase, turn, seq, op, args, ok, read_only, error_kind, output_chars
FROM memory_ops SEMI JOIN _chunk USING (run_id, episode_id, attempt)
ORDER BY run_id, episode_id, attempt, step, {PHASE_ORDER_SQL}, turn, seq
"""
# Observations are fetched only for episodes whose env gave no state_key (the fallback needs them).
_STEPS_SQL = """
WITH s AS (
  SELECT run_id, episode_id, attempt, step, action_valid, observation,
         json_extract_string(info_json, '$.state_key') AS state_key
  FROM steps SEMI JOIN _chunk USING (run_id, episode_id, attempt)
)
SELECT run_id, episode_id, attempt, step, action_valid, state_key,
       CASE WHEN count(*) FILTER (WHERE state_key IS NULL) OVER (PARTITION BY run_id, episode_id, attempt) > 0
            THEN observation END AS observation
FROM s ORDER BY run_id, episode_id, attempt, step
"""


@dataclass
class EpisodeDiagnostics:
    """Per-episode rows, and each episode's memory size after every step that had operations."""

    table: pa.Table
    sizes: dict[tuple, dict[int, tuple[int, int, int]]]
    quality: dict[tuple, MemoryQuality]


def _grouped(table: pa.Table) -> Iterator[tuple[tuple, list[dict[str, Any]]]]:
    """Rows of a table sorted by the episode key, grouped per episode as dicts."""
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    keys = list(zip(*(cols[k] for k in KEY), strict=True))
    names = list(cols)
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            yield (
                keys[start],
                [
                    dict(zip(names, vals, strict=True))
                    for vals in zip(*(cols[n][start:i] for n in names), strict=True)
                ],
            )
            start = i


def analyse_store(con: duckdb.DuckDBPyConnection, *, chunk: int = 256) -> EpisodeDiagnostics:
    """Compute every episode's counts from the committed views of ``con``.

    Returns:
        ``table`` with the episode key and metadata, then counts: steps, invalid/assessed/unproductive actions,
        operations and errors (``err_<kind>`` per error kind), writes and redundant writes, repeated operations,
        searches and empty searches, lines written and read back, linked reads and read-to-write links
        (provenance), final memory bytes/lines/files and ``memory_by_step`` (``series.episode_series``), tokens
        and LLM seconds, progression. Episodes are read ``chunk`` at a time, so memory stays bounded.
    """
    episodes = con.sql(_EPISODES_SQL).to_arrow_table().to_pylist()
    rows: list[dict[str, Any]] = []
    sizes: dict[tuple, dict[int, tuple[int, int, int]]] = {}
    quality: dict[tuple, MemoryQuality] = {}
    for start in range(0, len(episodes), chunk):
        part = episodes[start : start + chunk]
        con.register("_chunk", pa.Table.from_pylist([{k: ep[k] for k in KEY} for ep in part]))
        ops = dict(_grouped(con.sql(_OPS_SQL).to_arrow_table()))
        steps = dict(_grouped(con.sql(_STEPS_SQL).to_arrow_table()))
        con.unregister("_chunk")
        for ep in part:
            rows.append(_episode_row(ep, ops, steps, sizes, quality))
    return EpisodeDiagnostics(pa.Table.from_pylist(rows) if rows else _empty(), sizes, quality)


def _episode_row(ep: dict, ops: dict, steps: dict, sizes: dict, quality: dict) -> dict[str, Any]:
    """One episode's row of counts (and its sizes and quality, recorded in ``sizes`` and ``quality``)."""
    key = tuple(ep[k] for k in KEY)
    mq = analyse_ops(ops.get(key, []))
    aq = analyse_steps(steps.get(key, []))
    sizes[key], quality[key] = mq.size_by_step, mq
    n_steps = aq.steps or ep["steps"] or 0
    row = dict(ep)
    row.update(
        steps=n_steps,
        invalid_actions=aq.invalid,
        assessed_actions=aq.assessed,
        unproductive_actions=aq.unproductive,
        state_method=aq.method,
        ops=mq.ops,
        op_errors=mq.op_errors,
        **{f"err_{k}": mq.errors_by_kind.get(k, 0) for k in ERROR_KINDS},
        writes=mq.writes,
        redundant_writes=mq.redundant_writes,
        repeated_ops=mq.repeated_ops,
        reads=mq.reads,
        searches=mq.searches,
        empty_searches=mq.empty_searches,
        lines_written=mq.lines_written,
        lines_read_back=mq.lines_read_back,
        linked_reads=mq.linked_reads,
        read_links=len(mq.links),
        memory_bytes=mq.final_bytes,
        memory_lines=mq.final_lines,
        memory_files=mq.final_files,
        max_memory_bytes=max((b for b, _, _ in mq.size_by_step.values()), default=0),
        memory_by_step=episode_series(mq.size_by_step, n_steps),
        tokens=(ep["prompt_tokens"] or 0) + (ep["completion_tokens"] or 0),
        llm_seconds=ep["llm_seconds"] or 0.0,
        progression=ep["progression"] or 0.0,
        progression_points=100.0 * (ep["progression"] or 0.0),
        replay_mismatches=mq.replay_mismatches,
    )
    return row


def _empty() -> pa.Table:
    names = [*KEY, *META, "progression", "steps"]
    return pa.table({n: pa.array([], pa.string()) for n in names})


def size_series(sizes: dict[int, tuple[int, int, int]], n_steps: int) -> list[tuple[int, int, int]]:
    """(bytes, lines, files) after each step ``0..n_steps-1``, carried forward over steps without operations."""
    out, last = [], (0, 0, 0)
    for t in range(n_steps):
        last = sizes.get(t, last)
        out.append(last)
    return out


__all__ = ["KEY", "META", "EpisodeDiagnostics", "analyse_store", "size_series"]
