"""The deterministic clean-up of a selected completion into a training target.

``postprocess`` keeps, in order, each line that the memory grammar (``automem.memory.grammar.parse``) reads as one
operation enabled for the turn's phase, up to the first ``DONE``, and ends the text with ``DONE``:

- code-fence lines (```` ``` ````, ```` ```text ````) go; the operations between them stay;
- whatever follows ``DONE`` (or ``END``) goes;
- a line that is not an enabled operation goes: prose, a game action written into a PLAN turn (PLAN enables only
  the read-only operations, so a write there goes too);
- a completion left with no operation is dropped (None).

The result parses with the same grammar into exactly the kept operations, with no error, and post-processing it
again changes nothing (a property test checks both). Exact duplicates are dropped by the dataset builder.
"""

from __future__ import annotations

from collections.abc import Sequence

from automem.memory.grammar import ParsedOp, parse

END = "DONE"


def _is_end(line: str) -> bool:
    """Whether the grammar stops reading at ``line`` (``DONE``, ``END``, ``**Done.**``, ...): nothing after it
    is read, so a probe operation after it yields nothing."""
    return parse(f"{line}\nLIST") == []


def postprocess(completion: str, enabled: Sequence[str]) -> str | None:
    """A completion reduced to its enabled operations, one per line, then ``DONE``; None when none is left.

    Args:
        completion: the model's text, as stored.
        enabled: the operations the turn's phase allowed (PLAN: the scaffold's read-only ones).
    """
    allowed = set(enabled)
    kept: list[str] = []
    for line in completion.replace("\r\n", "\n").split("\n"):
        s = line.strip()
        if not s or s.startswith("```"):
            continue
        parsed = parse(s, list(enabled))
        if not parsed:
            if _is_end(s):
                break
            continue
        if len(parsed) == 1 and isinstance(parsed[0], ParsedOp) and parsed[0].op in allowed:
            kept.append(s)
    return "\n".join([*kept, END]) if kept else None


def operations(text: str, enabled: Sequence[str]) -> list[ParsedOp] | None:
    """The operations ``text`` parses into, or None if any line is an error or a disabled operation."""
    out: list[ParsedOp] = []
    for item in parse(text, list(enabled)):
        if not isinstance(item, ParsedOp) or item.op not in enabled:
            return None
        out.append(item)
    return out
