"""The memory store: one episode's memory files, their index, quotas, and the operations on them.

Operations run in the order written and never raise into the caller: every failure (bad path, missing file,
over quota, ...) becomes an ``OpResult`` with ``ok=False`` and leaves the files unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from automem.memory.backend import DictBackend, DiskBackend, FileBackend
from automem.memory.paths import PathViolation
from automem.memory.quotas import DEFAULT_QUOTAS, Quotas
from automem.memory.results import OpRecord, OpResult, error


@dataclass
class FileStat:
    """Index entry for one file: kept up to date incrementally, never by rescanning."""

    lines: int
    bytes: int
    ends_with_newline: bool


def split_lines(text: str) -> list[str]:
    """The lines of a file: split on ``\n`` only, as SEARCH, COUNT and the index count them.

    ``str.splitlines`` also splits on \\v, \\f, \\x1c-\\x1e, \\x85, \\u2028, \\u2029 and \\r, which made READ's line
    numbers disagree with SEARCH's and made UPSERT rewrite those characters as newlines.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    return lines


def stat_of(text: str) -> FileStat:
    """The index entry for a file holding ``text``."""
    lines = text.count("\n") + (0 if text == "" or text.endswith("\n") else 1)
    return FileStat(lines, len(text.encode()), text == "" or text.endswith("\n"))


class OpFailed(Exception):
    """Raised inside an operation to turn into an error result; never escapes the store."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class MemoryStore:
    """One episode's memory: a backend of files, an incremental index, and quotas.

    Args:
        backend: where the files live (``DiskBackend`` in episodes, ``DictBackend`` in replay).
        quotas: size and count limits.
        on_record: called with an ``OpRecord`` for every operation executed (the op log).
    """

    def __init__(
        self,
        backend: FileBackend,
        quotas: Quotas = DEFAULT_QUOTAS,
        on_record: Callable[[OpRecord], None] | None = None,
    ) -> None:
        self.backend = backend
        self.quotas = quotas
        self.on_record = on_record
        self.index: dict[str, FileStat] = {}
        self._lower: dict[str, tuple[object, str, str]] = {}  # name -> (version, text, text.lower())
        for name in backend.names():
            try:
                self.index[name] = stat_of(backend.read(name))
            except (PathViolation, OSError):
                continue  # swapped for a link or removed since it was listed: not a memory file

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    def open_dir(cls, root: str | Path, quotas: Quotas = DEFAULT_QUOTAS, **kw) -> MemoryStore:
        """A store over an existing (or new, created here) directory."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(DiskBackend(root.resolve()), quotas, **kw)

    @classmethod
    def fresh(
        cls,
        root: str | Path,
        quotas: Quotas = DEFAULT_QUOTAS,
        initial_files: Iterable[tuple[str, str]] = (),
        **kw,
    ) -> MemoryStore:
        """A new, empty directory for one episode, seeded with ``initial_files`` through logged WRITEs.

        Raises:
            FileExistsError: ``root`` exists and is not empty (an episode never inherits memory by accident).
        """
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"memory root {root} is not empty")
        store = cls.open_dir(root, quotas, **kw)
        for seq, (name, text) in enumerate(initial_files):
            result = store.run_op("WRITE", [name, text])
            store._log(0, "init", 0, seq, result, read_only=False)
            if not result.ok:
                raise ValueError(f"initial file {name!r} rejected: {result.error}")
        return store

    @classmethod
    def in_memory(cls, files: dict[str, str] | None = None, quotas: Quotas = DEFAULT_QUOTAS) -> MemoryStore:
        """A store over a dict (replay, tests)."""
        return cls(DictBackend(files), quotas)

    # -- queries used by prompts ----------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.index.values())

    def render_index(self) -> str:
        """``name (N lines, B bytes)`` per file, for prompts; cheap, from the index."""
        if not self.index:
            return "(no memory files)"
        return "\n".join(f"{n} ({s.lines} lines, {s.bytes} bytes)" for n, s in sorted(self.index.items()))

    def tail_lines(self, name: str, n: int) -> list[str]:
        """The last ``n`` lines of a file, reading only the end of it."""
        if name not in self.index or n <= 0:
            return []
        budget = 4096
        while True:
            lines = split_lines(self.backend.read_tail_bytes(name, budget))
            if len(lines) > n or budget >= self.index[name].bytes:
                return lines[-n:]
            budget *= 4

    def text_and_lower(self, name: str) -> tuple[str, str]:
        """A file's text and its lower-cased form, cached until the file changes (SEARCH and COUNT)."""
        version = self.backend.version(name)
        hit = self._lower.get(name)
        if version is not None and hit is not None and hit[0] == version:
            return hit[1], hit[2]
        text = self.backend.read(name)
        lower = text.lower()
        if version is not None:
            self._lower[name] = (version, text, lower)
        return text, lower

    # -- execution ------------------------------------------------------------------------------------------

    def run_op(self, op: str, args: list[str]) -> OpResult:
        """Run one operation by name with string arguments; never raises, whatever the input."""
        from automem.memory.ops import REGISTRY  # ops imports this module

        spec = REGISTRY.get(op.upper()) if isinstance(op, str) else None
        if spec is None:
            return error(None, list(args), "unknown_op", f"unknown operation {op!r}")
        try:
            values = spec.coerce(list(args))
            result = spec.fn(self, *values)
        except OpFailed as exc:
            return error(spec.name, list(args), exc.kind, str(exc))
        except PathViolation as exc:
            return error(spec.name, list(args), "path", str(exc))
        except OSError as exc:  # e.g. a file swapped for a folder behind our back
            return error(spec.name, list(args), "path", f"{type(exc).__name__}: {exc.strerror or exc}")
        except Exception as exc:  # last line of defence: a bug must not crash the agent loop
            return error(spec.name, list(args), "internal", f"internal error: {type(exc).__name__}: {exc}")
        result.op, result.args = spec.name, list(args)
        return self._cut(result)

    def _cut(self, result: OpResult) -> OpResult:
        budget = self.quotas.max_output_chars
        if len(result.output) > budget and not result.cut_chars:  # not already cut by the operation
            cut = len(result.output) - budget
            result.output = result.output[:budget] + f"\n... [{cut} more characters cut]"
            result.cut_chars = cut
        return result

    def _log(self, step: int, phase: str, turn: int, seq: int, result: OpResult, read_only: bool) -> None:
        if self.on_record is None:
            return
        self.on_record(
            OpRecord(
                step=step,
                phase=phase,
                turn=turn,
                seq=seq,
                op=result.op,
                args=tuple(result.args),
                ok=result.ok,
                read_only=read_only,
                error_kind=result.error_kind,
                bytes_delta=result.bytes_delta,
                output_chars=len(result.output),
            )
        )

    # -- primitives for operations: check quotas first, then change, then update the index -------------------

    def require_file(self, name: str) -> FileStat:
        self.backend.check(name)
        st = self.index.get(name)
        if st is None:
            raise OpFailed("missing", f"no file {name!r} (LIST shows the files)")
        return st

    def check_lines(self, text: str) -> None:
        limit = self.quotas.max_line_chars
        for line in text.split("\n"):
            if len(line) > limit:
                raise OpFailed("quota", f"a line is {len(line)} characters; the limit is {limit}")

    def check_size(self, name: str, new_bytes: int) -> None:
        q = self.quotas
        old = self.index.get(name)
        if old is None and len(self.index) >= q.max_files:
            raise OpFailed(
                "quota", f"memory already holds {len(self.index)} files; the limit is {q.max_files}"
            )
        if new_bytes > q.max_file_bytes:
            raise OpFailed("quota", f"{name!r} would be {new_bytes} bytes; the limit is {q.max_file_bytes}")
        total = self.total_bytes - (old.bytes if old else 0) + new_bytes
        if total > q.max_total_bytes:
            raise OpFailed("quota", f"memory would hold {total} bytes; the limit is {q.max_total_bytes}")

    def put(self, name: str, text: str) -> int:
        """Replace a file's content (quota already checked); returns the change in bytes."""
        old = self.index.get(name)
        self.backend.write(name, text)
        self.index[name] = stat_of(text)
        return self.index[name].bytes - (old.bytes if old else 0)

    def add(self, name: str, text: str) -> int:
        """Append to a file in O(len(text)): no re-read, the index is updated from the delta."""
        old = self.index.get(name) or FileStat(0, 0, True)
        if not old.ends_with_newline:
            text = "\n" + text
        data_bytes = len(text.encode())
        self.check_size(name, old.bytes + data_bytes)
        self.backend.append(name, text)
        self.index[name] = FileStat(
            lines=old.lines + text.count("\n") - (0 if old.ends_with_newline else 1),
            bytes=old.bytes + data_bytes,
            ends_with_newline=text.endswith("\n"),
        )
        return data_bytes

    def remove(self, name: str) -> int:
        st = self.index.pop(name)
        self._lower.pop(name, None)
        self.backend.delete(name)
        return -st.bytes
