"""Episode replay data for the report: each step's observation, action, turns, and memory as of that step.

Memory is rebuilt from the op log (``MemoryStore.run_op`` on an in-memory store), never read from snapshots. To
keep the report small it is shipped as per-step changes: a file's appended text when the step only appended
(``{"a": text}``), its full text otherwise (``{"f": text}``), or its removal (``{"d": 1}``); the page applies
them in order. Read operations are re-run on the rebuilt memory so the replay shows what they returned, cut at
the length the live run returned (``output_chars``), and each line of a READ, TAIL or SEARCH output that an
earlier write of the agent produced carries that write's step (``src``: ``[line, step]`` pairs, from the
provenance links of ``diagnostics.memory_quality.analyse_ops``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from automem.diagnostics.memory_quality import LINE_READ_OPS, MemoryQuality, analyse_ops, op_order
from automem.memory.quotas import UNLIMITED_QUOTAS
from automem.memory.store import MemoryStore

_SHOWN_OUTPUT = 600  # characters of a read's output shown per operation
_UNLIMITED = UNLIMITED_QUOTAS


def _memory_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, text in after.items():
        old = before.get(name)
        if old == text:
            continue
        out[name] = {"a": text[len(old) :]} if old is not None and text.startswith(old) else {"f": text}
    for name in before.keys() - after.keys():
        out[name] = {"d": 1}
    return out


def episode_replay(
    episode: dict[str, Any],
    steps: list[dict],
    turns: list[dict],
    ops: list[dict],
    *,
    quality: MemoryQuality | None = None,
    max_text: int = 20000,
) -> dict[str, Any]:
    """The replay record of one episode (plain JSON types).

    Args:
        episode: its ``episodes`` row.
        steps, turns, ops: its rows of ``steps``, ``turns`` and ``memory_ops``.
        quality: ``analyse_ops`` of these ops, when the caller has it (``EpisodeDiagnostics.quality``);
            computed here otherwise.
        max_text: longest observation or completion kept (longer ones are cut, with a marker).
    """

    def cut(text: str | None) -> str:
        text = text or ""
        return (
            text
            if len(text) <= max_text
            else text[:max_text] + f"\n… [{len(text) - max_text} characters cut]"
        )

    store = MemoryStore.in_memory(quotas=_UNLIMITED)
    by_turn: dict[tuple, list[dict]] = defaultdict(list)
    by_step: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    log = sorted(ops, key=op_order)  # the order analyse_ops indexes its links by
    if quality is None:
        quality = analyse_ops(log)
    for i, row in enumerate(log):
        by_step[row["step"]].append((i, row))
    init: list[dict] = []
    files_at: dict[int, dict[str, str]] = {}
    for step, rows in by_step.items():
        for i, row in rows:
            shown: dict[str, Any] = {"op": row["op"], "args": list(row["args"] or []), "ok": row["ok"]}
            if not row["ok"]:
                shown["error"] = row["error_kind"]
            elif row["op"] in LINE_READ_OPS or row["op"] in ("COUNT", "LIST"):
                res = store.run_op(row["op"], list(row["args"] or []))
                shown["out"] = res.output[: min(row["output_chars"], _SHOWN_OUTPUT)]
                lines_shown = shown["out"].count("\n") + 1
                src = [[k, quality.op_keys[w][0]] for k, w in quality.sources.get(i, []) if k < lines_shown]
                if src:
                    shown["src"] = src
            elif row["op"] is not None:
                store.run_op(row["op"], list(row["args"] or []))
            if row["phase"] == "init":
                init.append(shown)
            else:
                by_turn[(row["step"], row["phase"], row["turn"])].append(shown)
        files_at[step] = dict(store.backend.files)  # type: ignore[attr-defined]
    turns_by_step: dict[int, list[dict]] = defaultdict(list)
    for t in sorted(turns, key=lambda r: (r["step"], op_order({**r, "seq": 0})[1], r["turn"])):
        turns_by_step[t["step"]].append(
            {
                "phase": t["phase"],
                "turn": t["turn"],
                "text": cut(t["completion"]),
                "ops": by_turn.get((t["step"], t["phase"], t["turn"]), []),
            }
        )
    out_steps: list[dict[str, Any]] = []
    memory: dict[str, str] = {}
    for s in sorted(steps, key=lambda r: r["step"]):
        t = s["step"]
        now = files_at.get(t, memory)
        out_steps.append(
            {
                "t": t,
                "obs": cut(s["observation"]),
                "action": s["action"],
                "text": cut(s["action_text"]),
                "valid": s["action_valid"],
                "reward": s["reward"],
                "prog": s["progression"],
                "info": json.loads(s["info_json"] or "{}"),
                "turns": turns_by_step.get(t, []),
                "mem": _memory_changes(memory, now),
            }
        )
        memory = now
    meta_keys = (
        "run_id",
        "episode_id",
        "attempt",
        "env_id",
        "seed",
        "scaffold_id",
        "memory_model",
        "action_model",
    )
    return {
        "id": f"{episode['run_id']}/{episode['episode_id']}",
        "meta": {k: episode.get(k) for k in meta_keys}
        | {"progression": episode.get("progression"), "status": episode.get("status")},
        "system": cut(episode.get("system_prompt")),
        "init": init,
        "steps": out_steps,
    }


__all__ = ["episode_replay"]
