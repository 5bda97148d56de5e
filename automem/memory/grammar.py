"""The memory-turn language: parse what a model wrote, and the regex that constrains what it may write.

A memory turn is one operation per line, ended by ``DONE``::

    APPEND notes.md found water to the east
    SEARCH "iron pickaxe" notes.md
    DONE

Arguments are separated by spaces; a ``word`` argument with spaces is written in double quotes (JSON escapes,
so ``\\n`` is a newline). The last ``text`` argument is the rest of the line, taken verbatim, quotes and
backslashes included. A text that starts with a double quote is read as JSON: one whole string (``"a\\nb"``) is
unquoted, which is how a multi-line text is written, and an unterminated one is a parse error. The grammar never
starts a text with a quote, so every string it allows parses as written.

The parser is tolerant of what small models write (any case, runs of spaces or tabs, code fences, list bullets,
``**bold**`` or `` `code` `` around a line or the operation name, a missing ``DONE`` at the end); each line it
cannot read becomes a ``parse`` error result with a one-line hint, never an exception.

``turn_regex`` builds, from the enabled operations, file names and quotas, a regular expression that vLLM's
structured outputs enforce; every string it matches parses with no error (a property test checks this).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from automem.memory.ops import REGISTRY, OpSpec
from automem.memory.results import OpResult, error

END_MARKERS = ("DONE", "END")
# Only ASCII blanks separate arguments: str.isspace() also takes U+0085, U+00A0, U+2028 and others, which would
# silently drop a hostile character from a name instead of letting the name check refuse it.
_SPACE = " \t\r\f\v"
_BULLET = re.compile(r"^([-*•]\s+|\d{1,2}[.)]\s+|>\s*)")
_LOOKS_LIKE_FILE = re.compile(r"^[\w./-]+\.\w{1,8}$|/")


@dataclass
class ParsedOp:
    """An operation read from text: upper-case name and its string arguments."""

    op: str
    args: list[str]
    raw: str


Parsed = ParsedOp | OpResult  # an OpResult here is always a parse error


def _hint(enabled: list[str] | None) -> str:
    names = ", ".join(enabled or list(REGISTRY))
    return f"each line must be one operation ({names}) or DONE"


def _tokens(s: str, limit: int | None = None) -> list[tuple[str, int, int]]:
    """Split ``s`` into (value, start, end); a token starting with a double quote is a JSON string.

    Stops after ``limit`` tokens: what follows is a free-text argument, which is never tokenized.
    """
    out: list[tuple[str, int, int]] = []
    i, n = 0, len(s)
    decoder = json.JSONDecoder()
    while i < n:
        if s[i] in _SPACE:
            i += 1
            continue
        if limit is not None and len(out) >= limit:
            out.append(("", i, n))  # a marker: the rest starts here
            break
        if s[i] == '"':
            try:
                value, end = decoder.raw_decode(s, i)
            except json.JSONDecodeError as exc:
                raise ValueError(f"unterminated or malformed quoted string: {exc.msg}") from None
            out.append((str(value), i, end))
            i = end
        else:
            j = i
            while j < n and s[j] not in _SPACE:
                j += 1
            out.append((s[i:j], i, j))
            i = j
    return out


def _rest(s: str) -> str:
    """A trailing text argument: one whole quoted string is unquoted, anything else is taken literally.

    Only a text that *starts* with a double quote is read as JSON, and one whose opening string is unterminated
    or malformed is refused (a model that opened a quote and broke the line meant something else); quotes and
    backslashes anywhere after the first character are plain text.
    """
    s = s.strip()
    if s[:1] == '"':
        try:
            value, end = json.JSONDecoder().raw_decode(s)
        except json.JSONDecodeError as exc:
            raise ValueError(f"unterminated or malformed quoted text: {exc.msg}") from None
        if end == len(s) and isinstance(value, str):
            return value
    return s


def _unwrap(s: str) -> str:
    """Strip what small models put around a whole line: `` `inline code` `` and ``**bold**`` (or ``__``)."""
    while len(s) > 1:
        if s[0] == "`" and s[-1] == "`":
            s = s[1:-1].strip()
        elif len(s) > 4 and s[:2] in ("**", "__") and s[-2:] == s[:2]:
            s = s[2:-2].strip()
        else:
            break
    return s


def _split_head(s: str) -> tuple[str, str]:
    """The operation word and the rest of the line, split at the first run of whitespace (tabs included)."""
    for i, c in enumerate(s):
        if c in _SPACE:
            return s[:i], s[i:].lstrip(_SPACE)
    return s, ""


def _parse_args(spec: OpSpec, rest: str) -> list[str]:
    text_at = next((i for i, a in enumerate(spec.args) if a.kind == "text"), None)
    if text_at is not None:
        # Tokenize only the arguments before the free text; the text is the rest of the line, verbatim, so
        # a stray quote or backslash in it (which the grammar allows) is never read as a JSON string.
        toks = _tokens(rest, limit=text_at)
        args = [value for value, _, _ in toks[:text_at]]
        if len(toks) > text_at:
            args.append(_rest(rest[toks[text_at][1] :]))
        return args
    toks = _tokens(rest)
    if spec.name == "SEARCH" and len(toks) >= 2:
        last, start, _ = toks[-1]
        quoted_last = rest[start] == '"'
        # The last token is the scope when it is *, quoted, or looks like a file name; otherwise the whole
        # rest is the pattern (small models write `SEARCH iron pickaxe`).
        if last == "*" or quoted_last or _LOOKS_LIKE_FILE.search(last):
            pattern = toks[0][0] if len(toks) == 2 else rest[: toks[-1][1]].strip()
            return [pattern, last]
        return [_rest(rest)]
    if len(toks) > len(spec.args):
        raise ValueError("too many arguments")
    return [value for value, _, _ in toks]


def parse(text: str, enabled: list[str] | tuple[str, ...] | None = None) -> list[Parsed]:
    """Parse a model's memory turn into operations and parse-error results, in the order written.

    Args:
        text: the raw completion.
        enabled: operation names this scaffold allows (for hints); the executor enforces them.

    Returns:
        ``ParsedOp`` for each readable line and an error ``OpResult`` (kind ``parse`` or ``unknown_op``) for each
        line that is not; reading stops at ``DONE``.
    """
    enabled_list = list(enabled) if enabled is not None else None
    out: list[Parsed] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        s = line.strip()
        if not s or s.startswith("```"):
            continue
        s = _BULLET.sub("", s).strip()
        s = _unwrap(s)
        if not s:
            continue
        head, rest = _split_head(s)
        name = head.rstrip(":").strip("*`").rstrip(":")  # LIST:, **LIST**, `LIST`:, **LIST:**
        word = name.upper()
        if word.rstrip(".!") in END_MARKERS and not rest.strip():
            break
        spec = REGISTRY.get(word)
        if spec is None:
            # An all-caps first word reads as an attempt at an operation; anything else is prose.
            kind = "unknown_op" if re.fullmatch(r"[A-Z_]{2,12}", name) else "parse"
            out.append(error(None, [], kind, f"cannot read {s[:60]!r}: {_hint(enabled_list)}", raw=line))
            continue
        try:
            out.append(ParsedOp(spec.name, _parse_args(spec, rest), raw=line))
        except ValueError as exc:
            out.append(error(spec.name, [], "parse", f"{exc}; usage: {spec.signature}", raw=line))
    return out


class _JsonInt(str):
    """A JSON integer kept as its digits: ``int()`` of a 5,000-digit literal would exceed Python's limit."""


def parse_json(text: str) -> list[Parsed]:
    """The machine form: a JSON array of ``{"op": NAME, "args": [strings]}``.

    ``op`` is any case; ``args`` holds strings (integers are accepted and passed as their digits). An item
    that is not such an object becomes a ``parse`` error result; its ``op`` is the upper-cased name when that
    names a registered operation, else null (as for an unknown operation with well-formed arguments).

    Raises:
        ValueError: the text is not such an array, or is nested too deeply to read (a usage error, unlike a
            model's text).
    """
    try:
        data = json.loads(text, parse_int=_JsonInt)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of {op, args} objects")
    out: list[Parsed] = []
    for item in data:
        raw = _raw(item)
        op = item.get("op") if isinstance(item, dict) else None
        if not isinstance(op, str) or isinstance(op, _JsonInt):
            out.append(error(None, [], "parse", "each item needs a string 'op'", raw=raw))
            continue
        name = op.upper()
        args = item.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            known = name if name in REGISTRY else None
            out.append(error(known, [], "parse", "'args' must be a list of strings", raw=raw))
            continue
        out.append(ParsedOp(name, [str(a) for a in args], raw=raw))
    return out


def _raw(item: object) -> str:
    """An item's JSON text for error results, bounded (an item may be huge or deeply nested)."""
    try:
        return json.dumps(item)[:200]
    except (RecursionError, ValueError):
        return "(unprintable item)"


# -- constrained decoding ---------------------------------------------------------------------------------------

# Bare text the parser takes literally: printable ASCII not starting with a quote or space.
_TEXT_FIRST = r"[!#-~]"
_TEXT_REST = r"[ -~]"
_WORD = r"[A-Za-z0-9_.-]{1,32}"
_KEY = r"[A-Za-z0-9_-]{1,32}"
_INT = r"[1-9][0-9]{0,3}"
_NEW_FILE = r"[a-z][a-z0-9_-]{0,23}\.md"


def turn_regex(
    enabled: list[str] | tuple[str, ...],
    files: list[str],
    *,
    max_ops: int = 8,
    max_text_chars: int = 120,
    allow_new_files: bool = True,
) -> str:
    """A regex for one memory turn: up to ``max_ops`` operation lines, then ``DONE``.

    Args:
        enabled: operation names allowed in this turn.
        files: file names from the scaffold's schema.
        max_ops: most operation lines (the scaffold's per-turn quota).
        max_text_chars: longest free-text argument.
        allow_new_files: also allow names outside the schema (simple ``name.md``) where a write may create them.

    Returns:
        A regex in the subset both Python's ``re`` and vLLM's grammar engines accept (plain groups, no lookaround, no
        backreferences, bounded repetition).
    """
    known = "|".join(re.escape(f) for f in sorted(files)) or _NEW_FILE
    file_any = f"({known}|{_NEW_FILE})" if allow_new_files and files else f"({known})"
    file_old = f"({known})"
    text = f"{_TEXT_FIRST}{_TEXT_REST}{{0,{max_text_chars - 1}}}"
    shapes = {
        "LIST": "LIST",
        "READ": f"READ {file_old}( {_INT} {_INT})?",
        "TAIL": f"TAIL {file_old}( {_INT})?",
        "COUNT": f"COUNT {file_old} {_WORD}",
        "SEARCH": f"SEARCH {_WORD} ({file_old}|\\*)",
        "CREATE": f"CREATE {file_any}",
        "WRITE": f"WRITE {file_any} {text}",
        "APPEND": f"APPEND {file_any} {text}",
        "UPSERT": f"UPSERT {file_old} {_KEY} {text}",
        "REPLACE": f"REPLACE {file_old} {_WORD} {text}",
        "DELETE": f"DELETE {file_old}",
    }
    lines = "|".join(shapes[n] for n in REGISTRY if n in enabled)
    if not lines:
        return "DONE"
    return f"(({lines})\\n){{0,{max_ops}}}DONE"


def action_regex(action_names: list[str]) -> str:
    """A regex matching exactly one of the game's action names."""
    return "(" + "|".join(re.escape(a) for a in action_names) + ")"
