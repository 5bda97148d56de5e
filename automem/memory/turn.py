"""Run one model turn's memory operations against a store, in the order written."""

from __future__ import annotations

from collections.abc import Sequence

from automem.memory.grammar import Parsed, ParsedOp, parse
from automem.memory.ops import ALL_OPS, REGISTRY
from automem.memory.results import OpResult, error
from automem.memory.store import MemoryStore


def execute(
    store: MemoryStore,
    parsed: Sequence[Parsed],
    *,
    enabled: Sequence[str] = ALL_OPS,
    read_only: bool = False,
    step: int = 0,
    phase: str = "cli",
    turn: int = 0,
) -> list[OpResult]:
    """Run parsed operations one by one, in order, and log each to the store's op log.

    Args:
        store: the episode's memory.
        parsed: output of ``parse`` or ``parse_json``; parse errors pass through as results.
        enabled: operations this scaffold allows; others return a ``disabled`` error.
        read_only: the phase may only read (PLAN); writes return a ``read_only`` error.
        step, phase, turn: where in the episode this turn is, for the op log.

    Returns:
        One result per entry of ``parsed``. Operations past the per-turn quota are not run (``limit`` error).
    """
    results: list[OpResult] = []
    ran = 0
    limit = store.quotas.max_ops_per_turn
    for seq, item in enumerate(parsed):
        if isinstance(item, OpResult):
            result = item
        else:
            result = _run_one(store, item, enabled, read_only, ran >= limit)
            ran += 1
        spec = REGISTRY.get(result.op or "")
        store._log(step, phase, turn, seq, result, read_only=spec.read_only if spec else True)
        results.append(result)
    return results


def _run_one(
    store: MemoryStore, item: ParsedOp, enabled: Sequence[str], read_only: bool, over: bool
) -> OpResult:
    spec = REGISTRY.get(item.op)
    if spec is None:
        return error(None, item.args, "unknown_op", f"unknown operation {item.op!r}", raw=item.raw)
    if over:
        limit = store.quotas.max_ops_per_turn
        return error(spec.name, item.args, "limit", f"only {limit} operations run per turn; this one did not")
    if read_only and not spec.read_only:
        return error(
            spec.name, item.args, "read_only", f"{spec.name} writes; this phase may only read memory"
        )
    if spec.name not in enabled:
        return error(
            spec.name, item.args, "disabled", f"{spec.name} is not enabled; use {', '.join(enabled)}"
        )
    return store.run_op(spec.name, item.args)


def run_text(store: MemoryStore, text: str, **kw) -> list[OpResult]:
    """Parse and execute a model's memory turn."""
    enabled = kw.get("enabled", ALL_OPS)
    return execute(store, parse(text, enabled), **kw)
