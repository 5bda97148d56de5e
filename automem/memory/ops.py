"""The memory operations: their signatures, semantics and help text, in one registry.

Semantics (also rendered into prompts by ``render_help``):
- Lines are separated by ``\n`` only (no other character ends a line), 1-based, and ranges inclusive. Patterns
  are case-insensitive literal substrings (no regex).
- Files always end with a newline; WRITE, APPEND and UPSERT add it.
- Numbers are ASCII digits, at most 9 of them. Every argument must be valid UTF-8 text.
- CREATE on an existing file is an error; READ, TAIL, COUNT, REPLACE, UPSERT and DELETE on a missing file are
  errors; WRITE and APPEND create a missing file.
- REPLACE replaces every occurrence, case-sensitively, and is an error when the old text is absent.
- SEARCH with no match is ok with empty output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from automem.memory.results import OpResult
from automem.memory.store import MemoryStore, OpFailed, split_lines


@dataclass(frozen=True)
class Arg:
    """One argument of an operation.

    ``kind`` is ``file`` (a memory-file name), ``scope`` (a file name or ``*``), ``int`` (a positive integer),
    ``word`` (one token; quote it in double quotes if it has spaces) or ``text`` (the rest of the line).
    """

    name: str
    kind: str
    optional: bool = False


@dataclass(frozen=True)
class OpSpec:
    """A memory operation: name, typed arguments, read-only flag, help, and implementation."""

    name: str
    args: tuple[Arg, ...]
    read_only: bool
    help: str
    fn: Callable[..., OpResult]
    usage: str | None = None  # the signature, where the default rendering would mislead

    @property
    def signature(self) -> str:
        if self.usage:
            return self.usage
        parts = [self.name]
        for a in self.args:
            parts.append(f"[{a.name}]" if a.optional else a.name)
        return " ".join(parts)

    def coerce(self, args: list[str]) -> list:
        """Check the argument count and form and convert ints; raises ``OpFailed('bad_args')``."""
        required = sum(not a.optional for a in self.args)
        if not required <= len(args) <= len(self.args):
            raise OpFailed("bad_args", f"usage: {self.signature}")
        if self.name == "READ" and len(args) == 2:
            raise OpFailed("bad_args", f"READ takes both start and end, or neither; usage: {self.signature}")
        values: list = []
        for spec, value in zip(self.args, args, strict=False):
            if not isinstance(value, str):
                raise OpFailed("bad_args", f"{spec.name} must be a string, got {type(value).__name__}")
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:  # a lone surrogate: undecodable bytes, or a bad JSON escape
                    raise OpFailed(
                        "bad_args",
                        f"argument {spec.name!r} is not valid UTF-8 (undecodable bytes or a lone surrogate)",
                    ) from None
            if spec.kind == "int":
                # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses, and a
                # bound on the length keeps int() clear of Python's int-string conversion limit.
                digits = value.strip()
                if not _INT.fullmatch(digits) or int(digits) < 1:
                    raise OpFailed(
                        "bad_args",
                        f"{spec.name} must be a positive integer (ASCII digits), got {value[:20]!r}",
                    )
                values.append(int(digits))
            elif spec.kind == "text" and "\x00" in value:
                raise OpFailed("bad_args", "text contains a NUL character")
            else:
                values.append(value)
        return values


_INT = re.compile(r"[0-9]{1,9}")
# Keys become line prefixes: no control characters (NUL, newline, tab, C1), nothing that reads as the separator.
_BAD_KEY = re.compile("[\x00-\x1f\x7f-\x9f:]")


def _norm_text(text: str) -> str:
    text = text.replace("\r\n", "\n").rstrip("\n")
    return text + "\n" if text else ""


def _list(store: MemoryStore) -> OpResult:
    return OpResult(op="LIST", output=store.render_index() if store.index else "")


def _read(store: MemoryStore, name: str, start: int | None = None, end: int | None = None) -> OpResult:
    store.require_file(name)
    lines = split_lines(store.backend.read(name))
    if start is not None and end is not None:
        if end < start:
            raise OpFailed("bad_args", f"end ({end}) is before start ({start})")
        lines = lines[start - 1 : end]
    return OpResult(op="READ", output="\n".join(lines))


def _tail(store: MemoryStore, name: str, n: int = 10) -> OpResult:
    store.require_file(name)
    return OpResult(op="TAIL", output="\n".join(store.tail_lines(name, n)))


def _scan(store: MemoryStore, name: str, pattern: str) -> tuple[str, str, str]:
    if not pattern:
        raise OpFailed("bad_args", "empty pattern")
    text, hay = store.text_and_lower(name)
    return text, hay, pattern.lower()


def _count_lines(hay: str, needle: str) -> int:
    """Lines of ``hay`` containing ``needle`` (which holds no newline): ``str.find`` from hit to hit, skipping
    the rest of each matching line, so the Python loop runs once per matching line, never per line. On a
    10,000-line file it took 0.5 ms for 5% matching lines against 5.7 ms with a multiline regex."""
    count, pos = 0, hay.find(needle)
    while pos != -1:
        count += 1
        end = hay.find("\n", pos)
        if end == -1:
            break
        pos = hay.find(needle, end)
    return count


def _matches(text: str, hay: str, needle: str):
    """Yield (line number, line) for each line of ``text`` whose lower-cased form ``hay`` contains ``needle``."""
    if len(hay) != len(text):  # a few characters change length when lower-cased; go line by line
        for i, line in enumerate(split_lines(text), 1):
            if needle in line.lower():
                yield i, line
        return
    pos, line_no, line_start = hay.find(needle), 1, 0
    while pos != -1:
        line_no += hay.count("\n", line_start, pos)
        start = hay.rfind("\n", 0, pos) + 1
        end = hay.find("\n", pos)
        end = len(hay) if end == -1 else end
        yield line_no, text[start:end]
        line_start = end
        pos = hay.find(needle, end)


def _count(store: MemoryStore, name: str, pattern: str) -> OpResult:
    store.require_file(name)
    _text, hay, needle = _scan(store, name, pattern)
    return OpResult(op="COUNT", output=str(_count_lines(hay, needle)))


def _search(store: MemoryStore, pattern: str, scope: str = "*") -> OpResult:
    names = sorted(store.index) if scope == "*" else [scope]
    if scope != "*":
        store.require_file(scope)
    # Format hits only up to the output budget; past it, only count them (a broad SEARCH on a long memory
    # would otherwise build a huge string just to cut it).
    budget, size, hits, more = store.quotas.max_output_chars, 0, [], 0
    for n in names:
        text, hay, needle = _scan(store, n, pattern)
        if more:  # already over budget: only count
            more += _count_lines(hay, needle)
            continue
        shown = 0
        for i, line in _matches(text, hay, needle):
            hit = f"{n}:{i}: {line}"
            if size + len(hit) + 1 > budget:
                more = _count_lines(hay, needle) - shown
                break
            hits.append(hit)
            size += len(hit) + 1
            shown += 1
    result = OpResult(op="SEARCH", output="\n".join(hits))
    if more:
        result.output += f"\n... [{more} more matching lines not shown]"
        result.cut_chars = more
    return result


def _create(store: MemoryStore, name: str) -> OpResult:
    store.backend.check(name)
    if name in store.index:
        raise OpFailed("exists", f"{name!r} already exists")
    store.check_size(name, 0)
    return OpResult(op="CREATE", output=f"created {name}", bytes_delta=store.put(name, ""))


def _write(store: MemoryStore, name: str, text: str) -> OpResult:
    store.backend.check(name)
    content = _norm_text(text)
    store.check_lines(content)
    store.check_size(name, len(content.encode()))
    return OpResult(op="WRITE", output=f"wrote {name}", bytes_delta=store.put(name, content))


def _append(store: MemoryStore, name: str, text: str) -> OpResult:
    store.backend.check(name)
    content = _norm_text(text)
    if not content:
        raise OpFailed("bad_args", "nothing to append")
    store.check_lines(content)
    return OpResult(op="APPEND", output=f"appended to {name}", bytes_delta=store.add(name, content))


def _upsert(store: MemoryStore, name: str, key: str, text: str) -> OpResult:
    if _BAD_KEY.search(key):  # before strip(), which would drop U+0085 and other non-ASCII blanks
        raise OpFailed("bad_args", "key must be non-empty, without ':' or control characters")
    key = key.strip()
    if not key:
        raise OpFailed("bad_args", "key must be non-empty, without ':' or control characters")
    if "\n" in text.strip():
        raise OpFailed("bad_args", "UPSERT text must be one line")
    store.require_file(name)
    new_line = f"{key}: {text.strip()}"
    store.check_lines(new_line)
    lines = split_lines(store.backend.read(name))
    for i, line in enumerate(lines):
        if ":" in line and line.split(":", 1)[0].strip().lower() == key.lower():
            lines[i] = new_line
            break
    else:
        lines.append(new_line)
    content = "\n".join(lines) + "\n"
    store.check_size(name, len(content.encode()))
    return OpResult(op="UPSERT", output=f"set {key} in {name}", bytes_delta=store.put(name, content))


def _replace(store: MemoryStore, name: str, old: str, new: str) -> OpResult:
    store.require_file(name)
    if not old:
        raise OpFailed("bad_args", "old text is empty")
    text = store.backend.read(name)
    n = text.count(old)
    if n == 0:
        raise OpFailed("not_found", f"{old!r} is not in {name}")
    content = _norm_text(text.replace(old, new))
    before = set(split_lines(text))
    store.check_lines("\n".join(line for line in split_lines(content) if line not in before))
    store.check_size(name, len(content.encode()))
    return OpResult(op="REPLACE", output=f"replaced {n} in {name}", bytes_delta=store.put(name, content))


def _delete(store: MemoryStore, name: str) -> OpResult:
    store.require_file(name)
    return OpResult(op="DELETE", output=f"deleted {name}", bytes_delta=store.remove(name))


F, N = Arg("file", "file"), Arg
_SPECS = [
    OpSpec("LIST", (), True, "list the memory files with their line and byte counts", _list),
    OpSpec(
        "READ",
        (F, N("start", "int", True), N("end", "int", True)),
        True,
        "show a file, or lines start..end of it (1-based, inclusive; give both or neither);"
        " error if the file is missing",
        _read,
        usage="READ file [start end]",
    ),
    OpSpec(
        "TAIL",
        (F, N("n", "int", True)),
        True,
        "show the last n lines of a file (default 10); error if the file is missing",
        _tail,
    ),
    OpSpec(
        "COUNT",
        (F, N("pattern", "text")),
        True,
        "count the lines of a file that contain pattern (a literal, case-insensitive substring, not a"
        " regex); error if the file is missing",
        _count,
    ),
    OpSpec(
        "SEARCH",
        (N("pattern", "word"), N("file|*", "scope", True)),
        True,
        "show lines containing pattern (a literal, case-insensitive substring, not a regex) in one file"
        " or all (*) as file:line: text;"
        " empty when nothing matches; quote a pattern with spaces",
        _search,
    ),
    OpSpec("CREATE", (F,), False, "make a new empty file (error if it exists)", _create),
    OpSpec("WRITE", (F, N("text", "text")), False, "replace a whole file with text (creates it)", _write),
    OpSpec(
        "APPEND",
        (F, N("text", "text")),
        False,
        "add text as a new line at the end (creates the file)",
        _append,
    ),
    OpSpec(
        "UPSERT",
        (F, N("key", "word"), N("text", "text")),
        False,
        "set the line 'key: text', replacing the line with that key, else adding it;"
        " error if the file is missing",
        _upsert,
    ),
    OpSpec(
        "REPLACE",
        (F, N("old", "word"), N("new", "text")),
        False,
        "replace every occurrence of old with new (literal, case-sensitive); error if the file is missing"
        " or old is absent",
        _replace,
    ),
    OpSpec("DELETE", (F,), False, "remove a file; error if it is missing", _delete),
]

REGISTRY: dict[str, OpSpec] = {s.name: s for s in _SPECS}
READ_ONLY_OPS = frozenset(s.name for s in _SPECS if s.read_only)
ALL_OPS = tuple(REGISTRY)


def render_help(enabled: list[str] | tuple[str, ...] | None = None) -> str:
    """One line per enabled operation, ``SIGNATURE — help``, in registry order, for prompts."""
    names = [n for n in ALL_OPS if enabled is None or n in enabled]
    return "\n".join(f"{REGISTRY[n].signature} — {REGISTRY[n].help}" for n in names)
