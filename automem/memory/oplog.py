"""Event-sourced memory: the op log is the truth, and ``replay`` rebuilds the files at any step.

Trajectories store each operation once (its arguments, never the file content), so stored bytes grow with steps,
not with steps x memory size. Replay runs the same operation code on an in-memory backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from automem.memory.quotas import UNLIMITED_QUOTAS
from automem.memory.results import OpRecord
from automem.memory.store import MemoryStore

# Replay must never refuse what the live run accepted, so it runs without limits.
_UNLIMITED = UNLIMITED_QUOTAS


class OpLog(list[OpRecord]):
    """An in-memory op log; pass its ``append`` as a store's ``on_record``."""


def _field(rec: OpRecord | Mapping[str, Any], name: str) -> Any:
    return rec[name] if isinstance(rec, Mapping) else getattr(rec, name)


def replay(log: Iterable[OpRecord | Mapping[str, Any]], upto_step: int | None = None) -> dict[str, str]:
    """The memory files after every successful write with ``step <= upto_step`` (all, when None).

    Args:
        log: op records (``OpRecord`` or their dict form, e.g. rows read back from Parquet), in execution order.
        upto_step: last step to include.

    Returns:
        ``{file name: content}``, exactly what the live store held at that point.
    """
    store = MemoryStore.in_memory(quotas=_UNLIMITED)
    for rec in log:
        if upto_step is not None and _field(rec, "step") > upto_step:
            break
        if not _field(rec, "ok") or _field(rec, "read_only"):
            continue
        store.run_op(_field(rec, "op"), list(_field(rec, "args")))
    return dict(store.backend.files)  # type: ignore[attr-defined]
