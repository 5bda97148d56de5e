"""Memory-operation quality of one episode, computed by replaying its op log.

Definitions (each counts the agent's operations only: the scaffold's initial files, phase ``init``, are neither
writes nor written lines):

- **write**: a successful APPEND, WRITE, UPSERT or REPLACE (CREATE and DELETE are not writes of content).
- **redundant write**: a write that adds nothing. Lines are compared after normalisation (whitespace collapsed,
  lower-cased; blank lines ignored). APPEND and UPSERT are redundant when every line they add was already in the
  file. WRITE and REPLACE rewrite the file, so they are redundant when the file's set of normalised lines is the
  same afterwards (a rewrite that drops lines prunes memory, which is not redundant). Refinement of the issue's
  "new lines all already present", which would call every pruning WRITE redundant.
- **repeated operation**: an operation identical (name and arguments) to an earlier one in the same turn.
- **failing operations** by error kind (``automem.memory.results.ERROR_KINDS``); **empty search**: a SEARCH that
  succeeded with no output.
- **memory utility** with provenance: every non-blank line a write introduces gets an identity; a line a rewrite
  keeps verbatim keeps its identity (and its origin). Each successful READ, TAIL or SEARCH is re-run on the
  replayed memory (``MemoryStore.run_op``) and the lines it returned are linked to the writes that produced them.
  Utility is the share of written lines returned by at least one later read. Where the live run cut a long
  output, only what it showed counts (``shown_chars``); a line shown in part counts as returned. A **linked
  read** is a successful READ, TAIL or SEARCH that returned at least one line the agent wrote (lines of the
  scaffold's initial files have no origin, so a read of those alone is not linked).
- **memory size** after each step with operations: bytes, lines and files.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automem.memory.quotas import UNLIMITED_QUOTAS
from automem.memory.results import ERROR_KINDS
from automem.memory.store import MemoryStore

WRITE_OPS = frozenset({"APPEND", "WRITE", "UPSERT", "REPLACE"})
LINE_READ_OPS = frozenset({"READ", "TAIL", "SEARCH"})
PHASE_ORDER = {"init": 0, "log": 1, "plan": 2}
# Replay must accept everything the live run accepted, and return reads uncut (the cut is applied afterwards).
_UNLIMITED = UNLIMITED_QUOTAS
_SEARCH_HIT = re.compile(r"(.*?):(\d+): ")
_BLANK = -1  # identity of blank lines and of the scaffold's initial lines: never counted


def norm_line(line: str) -> str:
    """A line as compared for redundancy: whitespace collapsed, lower-cased."""
    return " ".join(line.split()).lower()


def op_order(row: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Execution order of an op-log row: step, phase (init, log, plan), turn, sequence in the turn."""
    return (row["step"], PHASE_ORDER.get(row["phase"], 3), row["turn"], row["seq"])


@dataclass
class MemoryQuality:
    """Counts for one episode; rates are left to the aggregation (ratios of sums over episodes)."""

    ops: int = 0
    op_errors: int = 0
    errors_by_kind: Counter = field(default_factory=Counter)
    writes: int = 0
    redundant_writes: int = 0
    repeated_ops: int = 0
    searches: int = 0
    empty_searches: int = 0
    reads: int = 0
    lines_written: int = 0
    lines_read_back: int = 0
    final_bytes: int = 0
    final_lines: int = 0
    final_files: int = 0
    size_by_step: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    """step -> (bytes, lines, files) after the step's operations (only steps that had operations)."""
    replay_mismatches: int = 0
    """Successful writes in the log that replay refused (a log that does not match the memory code)."""
    redundant_ops: list[int] = field(default_factory=list)
    """Indices (in the sorted log) of the redundant writes, in order (``redundant_writes`` counts them)."""
    sources: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    """Per linked read (its index in the sorted log): (line of its output, 0-based; index of the write op)."""
    op_keys: dict[int, tuple[int, str, int, int, str]] = field(default_factory=dict)
    """(step, phase, turn, seq, op) of every op that takes part in a link, by its index in the sorted log."""

    @property
    def links(self) -> list[tuple[int, int]]:
        """(index of a read op, index of the write op that produced a line it returned), in log order."""
        return [(read, write) for read, pairs in self.sources.items() for _, write in pairs]

    @property
    def linked_reads(self) -> int:
        """Reads that returned at least one line the agent wrote."""
        return len(self.sources)

    @property
    def utility(self) -> float | None:
        return self.lines_read_back / self.lines_written if self.lines_written else None

    def link_records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The provenance links as plain dicts, in log order: the read (step, phase, turn, seq, op, and the
        0-based ``line`` of its output) and the write that produced that line (step, phase, turn, seq, op).

        Args:
            limit: at most this many (the first ones); None for all.
        """
        names = ("step", "phase", "turn", "seq", "op")
        out: list[dict[str, Any]] = []
        for read, pairs in self.sources.items():
            for line, write in pairs:
                if limit is not None and len(out) >= limit:
                    return out
                out.append(
                    {
                        "read": dict(zip(names, self.op_keys[read], strict=True)) | {"line": line},
                        "write": dict(zip(names, self.op_keys[write], strict=True)),
                    }
                )
        return out


class _Replay:
    """Replayed memory plus, per file, its lines, their identities and a count of their normalised forms."""

    def __init__(self) -> None:
        self.store = MemoryStore.in_memory(quotas=_UNLIMITED)
        self.lines: dict[str, list[str]] = {}
        self.ids: dict[str, list[int]] = {}
        self.norms: dict[str, Counter] = {}
        self.next_id = 0
        self.origin: dict[int, int] = {}  # line identity -> op index that wrote it

    def _new_id(self, line: str, op_index: int, counted: bool) -> int:
        if not counted or not line.strip():
            return _BLANK
        uid = self.next_id
        self.next_id += 1
        self.origin[uid] = op_index
        return uid

    def apply(self, op: str, args: list[str], op_index: int, counted: bool) -> bool:
        """Apply a write the live run applied; False if replay refused it (the log does not match the code)."""
        name = args[0] if args else ""
        result = self.store.run_op(op, args)
        if not result.ok:
            return False
        if op == "DELETE":
            for d in (self.lines, self.ids, self.norms):
                d.pop(name, None)
            return True
        if op == "APPEND" and name in self.lines:  # O(appended text), not O(file): files end with a newline
            added = _norm_text(args[1]).split("\n")[:-1]
            self.lines[name].extend(added)
            self.ids[name].extend(self._new_id(line, op_index, counted) for line in added)
            self.norms[name].update(n for n in map(norm_line, added) if n)
            return True
        new = self.store.backend.read(name).split("\n")[:-1]
        pool: dict[str, deque[int]] = {}
        for line, uid in zip(self.lines.get(name, []), self.ids.get(name, []), strict=True):
            pool.setdefault(line, deque()).append(uid)
        ids = []
        for line in new:  # a line kept verbatim keeps its identity (and origin)
            kept = pool.get(line)
            ids.append(kept.popleft() if kept else self._new_id(line, op_index, counted))
        self.lines[name], self.ids[name] = new, ids
        self.norms[name] = Counter(n for n in map(norm_line, new) if n)
        return True

    def returned(self, op: str, args: list[str], output_chars: int) -> list[tuple[int, int]]:
        """(line of the output, identity) of each line a successful READ/TAIL/SEARCH returned in the live run."""
        result = self.store.run_op(op, args)
        if not result.ok or not result.output:
            return []
        hits = result.output.split("\n")
        visible = shown_chars(op, hits, output_chars)
        out: list[tuple[int, int]] = []
        pos = 0
        if op in ("READ", "TAIL"):
            ids = self.ids.get(args[0], [])
            first = (int(args[1]) - 1) if op == "READ" and len(args) == 3 else 0
            if op == "TAIL":
                first = len(ids) - len(hits)
            for k, line in enumerate(hits):
                if pos >= visible or first + k >= len(ids):
                    break
                out.append((k, ids[first + k]))
                pos += len(line) + 1
            return out
        for k, line in enumerate(hits):  # SEARCH: "name:line: text"
            if pos >= visible:
                break
            pos += len(line) + 1
            m = _SEARCH_HIT.match(line)
            if m and m[1] in self.ids and 0 < int(m[2]) <= len(self.ids[m[1]]):
                out.append((k, self.ids[m[1]][int(m[2]) - 1]))
        return out

    def size(self) -> tuple[int, int, int]:
        index = self.store.index
        return sum(s.bytes for s in index.values()), sum(s.lines for s in index.values()), len(index)


def shown_chars(op: str, lines: list[str], output_chars: int) -> int:
    """How many characters of an uncut output (``lines``) the live run showed, given its stored length.

    The live store cut long outputs and appended a marker (``automem.memory``: ``"\\n... [N more characters
    cut]"`` after the first ``max_output_chars`` characters; SEARCH keeps whole hits and appends
    ``"\\n... [N more matching lines not shown]"``); the stored ``output_chars`` includes the marker. Solving
    for the cut point recovers exactly what was shown.
    """
    full = sum(len(line) for line in lines) + len(lines) - 1
    if output_chars >= full:
        return full
    if op == "SEARCH":
        shown = -1  # length of "\n".join(lines[:k])
        for k in range(len(lines) + 1):
            size = max(shown, 0)
            if size + len(f"\n... [{len(lines) - k} more matching lines not shown]") == output_chars:
                return size
            if k < len(lines):
                shown += len(lines[k]) + 1
        return output_chars
    for digits in range(1, 16):
        budget = output_chars - len(f"\n... [{'0' * digits} more characters cut]")
        if budget > 0 and len(str(full - budget)) == digits:
            return budget
    return output_chars


def _norm_text(text: str) -> str:
    # Exactly what WRITE/APPEND store (automem.memory.ops._norm_text): CRLF to LF, one trailing newline.
    text = text.replace("\r\n", "\n").rstrip("\n")
    return text + "\n" if text else ""


def _op_key(row: Mapping[str, Any]) -> tuple[int, str, int, int, str]:
    return (row["step"], row["phase"], row["turn"], row["seq"], row["op"])


def _redundant(rep: _Replay, op: str, args: list[str]) -> bool | None:
    """Whether a write adds nothing, judged before it is applied; None when it cannot be judged yet."""
    name = args[0]
    before = rep.norms.get(name) or Counter()
    if op == "APPEND":
        added = [n for n in map(norm_line, _norm_text(args[1]).split("\n")) if n]
        return bool(before) and bool(added) and all(n in before for n in added)
    if op == "UPSERT":
        return bool(before) and norm_line(f"{args[1].strip()}: {args[2].strip()}") in before
    return None  # WRITE/REPLACE: compare the line sets after applying


def analyse_ops(rows: Iterable[Mapping[str, Any]]) -> MemoryQuality:
    """Replay one episode's op log and measure the quality of its memory operations.

    Args:
        rows: the episode's ``memory_ops`` rows (dicts with step, phase, turn, seq, op, args, ok, read_only,
            error_kind, output_chars), in any order.

    Returns:
        The episode's counts; see the module docstring for the definitions.
    """
    log = sorted(rows, key=op_order)
    q = MemoryQuality()
    rep = _Replay()
    read_ids: set[int] = set()
    turn_key: tuple | None = None
    seen: set[tuple] = set()
    for i, row in enumerate(log):
        if i and row["step"] != log[i - 1]["step"]:
            q.size_by_step[log[i - 1]["step"]] = rep.size()
        op, args, counted = row["op"], list(row["args"] or []), row["phase"] != "init"
        if counted:
            q.ops += 1
            key = (row["step"], row["phase"], row["turn"])
            if key != turn_key:
                turn_key, seen = key, set()
            sig = (op, tuple(args))
            if op is not None and sig in seen:
                q.repeated_ops += 1
            seen.add(sig)
        if not row["ok"]:
            if counted:
                q.op_errors += 1
                q.errors_by_kind[row["error_kind"] or "unknown"] += 1
        elif op in WRITE_OPS:
            verdict = _redundant(rep, op, args) if counted else None
            before = set(rep.norms.get(args[0], ())) if op in ("WRITE", "REPLACE") else None
            existed = args[0] in rep.lines
            q.replay_mismatches += not rep.apply(op, args, i, counted)
            if counted:
                q.writes += 1
                if verdict is None:
                    verdict = existed and before == set(rep.norms.get(args[0], ()))
                if verdict:
                    q.redundant_writes += 1
                    q.redundant_ops.append(i)
        elif op in ("CREATE", "DELETE"):
            q.replay_mismatches += not rep.apply(op, args, i, counted)
        elif op in LINE_READ_OPS and counted:
            q.reads += 1
            if op == "SEARCH":
                q.searches += 1
                q.empty_searches += row["output_chars"] == 0
            returned = [(k, uid) for k, uid in rep.returned(op, args, row["output_chars"]) if uid >= 0]
            read_ids.update(uid for _, uid in returned)
            sources = [(k, rep.origin[uid]) for k, uid in returned]
            if sources:
                q.sources[i] = sources
                for w in (i, *(w for _, w in sources)):
                    q.op_keys.setdefault(w, _op_key(log[w]))
    if log:
        q.size_by_step[log[-1]["step"]] = rep.size()
    q.lines_written = rep.next_id
    q.lines_read_back = len(read_ids)
    q.final_bytes, q.final_lines, q.final_files = rep.size()
    return q


__all__ = [
    "ERROR_KINDS",
    "LINE_READ_OPS",
    "WRITE_OPS",
    "MemoryQuality",
    "analyse_ops",
    "norm_line",
    "op_order",
]
