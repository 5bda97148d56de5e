"""Turn-level evaluation (issue 15, item 1): score a model's answer to one recorded memory turn.

For each memory turn of a held-out episode, ``memory_before`` rebuilds the episode's memory exactly as it was
before that turn (the op log replayed up to it, ``automem.memory.replay``); ``score_answer`` parses an answer with
the scaffold's memory grammar and runs its operations against a private copy of that memory; ``paired_bootstrap``
gives the 95% interval of the mean paired difference of a score between two models answering the same turns.

Definitions (per answer):

- **lines**: the lines the parser read: non-blank, outside code fences, before the end marker (``DONE``). Each
  yields exactly one operation or one parse error (``automem.memory.grammar.parse``).
- **well-formed operation**: a line that reads as an enabled operation with valid arguments, i.e. whose result
  is not a failure of kind ``parse``, ``unknown_op``, ``bad_args``, ``path``, ``disabled`` or ``read_only``
  (``MALFORMED_KINDS``). An operation refused for the state of the memory (``missing``, ``exists``,
  ``not_found``, ``quota``) or past the per-turn limit (``limit``) is well-formed but failed.
- **well-formed share**: well-formed operations / lines; 0 when there are no lines (prose alone reads as lines
  of kind ``parse``, so its share is 0 too).
- **failed operations by kind**, **writes**, **redundant writes** and **repeated operations**: exactly as
  ``automem.diagnostics.memory_quality`` defines them for an episode, computed by ``analyse_ops`` on the rebuilt
  memory (as uncounted initial files) followed by the answer's operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from automem.diagnostics.memory_quality import PHASE_ORDER, analyse_ops, op_order
from automem.diagnostics.stats import RESAMPLES, compare
from automem.memory.backend import DictBackend
from automem.memory.grammar import parse
from automem.memory.oplog import OpLog, replay
from automem.memory.ops import READ_ONLY_OPS
from automem.memory.quotas import DEFAULT_QUOTAS, Quotas
from automem.memory.results import OpRecord
from automem.memory.store import MemoryStore
from automem.memory.turn import execute

if TYPE_CHECKING:
    import pyarrow as pa

    from automem.scaffold.schema import Scaffold

MALFORMED_KINDS = frozenset({"parse", "unknown_op", "bad_args", "path", "disabled", "read_only"})
"""Failure kinds that say the line was not a usable operation (as opposed to one the memory refused)."""


def _row(rec: OpRecord | Mapping[str, Any]) -> Mapping[str, Any]:
    return rec.to_dict() if isinstance(rec, OpRecord) else rec


def episode_ops(
    memory_ops: pa.Table | Mapping[str, pa.Table], run_id: str, episode_id: str, attempt: int
) -> list[dict[str, Any]]:
    """One episode's ``memory_ops`` rows from a loaded table (or the dict ``automem.trajectory.load`` returns).

    Args:
        memory_ops: the ``memory_ops`` table, or a dict of tables holding it.
        run_id, episode_id, attempt: the episode.

    Returns:
        Its rows as dicts, in execution order (``op_order``).
    """
    import pyarrow.compute as pc

    table = memory_ops["memory_ops"] if isinstance(memory_ops, Mapping) else memory_ops
    mask = pc.and_(
        pc.and_(pc.equal(table["run_id"], run_id), pc.equal(table["episode_id"], episode_id)),
        pc.equal(table["attempt"], attempt),
    )
    return sorted(table.filter(mask).to_pylist(), key=op_order)


def files_before(
    ops: Iterable[OpRecord | Mapping[str, Any]], step: int, phase: str, turn: int
) -> dict[str, str]:
    """The memory files just before memory turn ``(step, phase, turn)`` of an episode.

    Args:
        ops: the episode's op log (``OpRecord`` or ``memory_ops`` rows), in any order; initial files included.
        step, phase, turn: the turn (phase ``log`` or ``plan``).

    Returns:
        ``{file name: content}``: every successful write of an earlier turn replayed, none of this turn's.
    """
    if phase not in PHASE_ORDER:
        raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASE_ORDER)}")
    target = (step, PHASE_ORDER[phase], turn)
    rows = sorted(map(_row, ops), key=op_order)
    return replay(r for r in rows if op_order(r)[:3] < target)


def memory_before(
    ops: Iterable[OpRecord | Mapping[str, Any]],
    step: int,
    phase: str,
    turn: int,
    *,
    quotas: Quotas = DEFAULT_QUOTAS,
) -> MemoryStore:
    """An in-memory store holding the episode's memory just before turn ``(step, phase, turn)``.

    Args:
        ops: the episode's op log (see ``files_before``).
        step, phase, turn: the turn.
        quotas: the limits operations run against afterwards (the scaffold's, to score as the live run would).
    """
    return MemoryStore.in_memory(files_before(ops, step, phase, turn), quotas=quotas)


@dataclass
class TurnScore:
    """The score of one answer to one memory turn (definitions in the module docstring)."""

    n_lines: int
    n_ops: int
    """Well-formed operations."""
    wellformed_share: float
    failed: dict[str, int] = field(default_factory=dict)
    """Failed operations (and unreadable lines) by error kind."""
    writes: int = 0
    redundant_writes: int = 0
    repeated_ops: int = 0
    writes_read_later: int | None = None
    """The answer's successful writes at least one of whose lines a later read of the episode returned (the
    episode's recorded operations after the turn, replayed on the answer's memory); None when not asked for."""

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())


def score_answer(
    memory: MemoryStore | Mapping[str, str],
    completion: str,
    scaffold: Scaffold,
    phase: str = "log",
    *,
    later: Sequence[Mapping[str, Any]] | None = None,
    step: int = 1,
) -> TurnScore:
    """Parse ``completion`` as a memory turn of ``phase`` and score its operations on a copy of ``memory``.

    Args:
        memory: the memory before the turn (``memory_before``, or its files); never changed.
        completion: the model's answer.
        scaffold: gives the enabled operations (PLAN: the read-only ones) and the quotas.
        phase: ``log`` or ``plan`` (PLAN may only read, as in the live run).
        later: the episode's ``memory_ops`` rows after this turn; given, ``writes_read_later`` is measured by
            replaying them after the answer (their recorded outcomes kept: a later write that failed live is
            skipped, as in ``analyse_ops``).
        step: the turn's step (orders the answer before ``later``).
    """
    if isinstance(memory, MemoryStore):
        files = {name: memory.backend.read(name) for name in memory.index}
    else:
        files = dict(memory)
    enabled = [o for o in scaffold.operations if phase != "plan" or o in READ_ONLY_OPS]
    log = OpLog()
    store = MemoryStore(DictBackend(files), scaffold.quotas, on_record=log.append)
    parsed = parse(completion, enabled)
    results = execute(store, parsed, enabled=enabled, read_only=phase == "plan", step=step, phase=phase)
    n_ops = sum(r.ok or r.error_kind not in MALFORMED_KINDS for r in results)
    # The rebuilt memory enters as uncounted initial files, so only the answer's operations are measured.
    init = [
        {"step": 0, "phase": "init", "turn": 0, "seq": k, "op": "WRITE", "args": [name, text], "ok": True}
        | {"read_only": False, "error_kind": None, "output_chars": 0}
        for k, (name, text) in enumerate(sorted(files.items()))
    ]
    answer = [r.to_dict() for r in log]
    q = analyse_ops([*init, *answer])
    read_later = None
    if later is not None:
        full = sorted([*init, *answer, *later], key=op_order)
        answer_rows = {id(a) for a in answer}
        mine = {i for i, row in enumerate(full) if id(row) in answer_rows}
        linked = analyse_ops(full).links
        read_later = len({w for _, w in linked if w in mine})
    return TurnScore(
        n_lines=len(parsed),
        n_ops=n_ops,
        wellformed_share=n_ops / len(parsed) if parsed else 0.0,
        failed=dict(q.errors_by_kind),
        writes=q.writes,
        redundant_writes=q.redundant_writes,
        repeated_ops=q.repeated_ops,
        writes_read_later=read_later,
    )


def paired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Mean paired difference ``b - a`` and its 95% percentile bootstrap interval, resampling pairs.

    Args:
        a, b: one score per turn, aligned (the same turns, answered by two models).
        n: resamples.
        seed: resampling seed (the same inputs always give the same interval).

    Returns:
        ``(mean difference, low, high)``.

    Raises:
        ValueError: empty or unequal lengths.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or a.size != b.size:
        raise ValueError(f"paired_bootstrap needs two aligned, non-empty samples (got {a.size} and {b.size})")
    ones = np.ones_like(a)
    d = compare((a, ones), (b, ones), paired=True, resamples=n, seed=seed)
    assert d.diff is not None and d.lo is not None and d.hi is not None  # non-empty, denominators > 0
    return d.diff, d.lo, d.hi


__all__ = [
    "MALFORMED_KINDS",
    "TurnScore",
    "episode_ops",
    "files_before",
    "memory_before",
    "paired_bootstrap",
    "score_answer",
]
