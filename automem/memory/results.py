"""Results and log records of memory operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Kinds of failure, so diagnostics can count them without parsing messages.
ERROR_KINDS = (
    "parse",  # the text could not be read as an operation
    "unknown_op",  # no such operation
    "disabled",  # the scaffold does not enable this operation
    "read_only",  # a write in a phase that may only read
    "bad_args",  # wrong number or form of arguments
    "path",  # unsafe name, or outside the memory root
    "missing",  # the file does not exist
    "exists",  # CREATE on an existing file
    "not_found",  # REPLACE text that is not in the file
    "quota",  # over a size or count limit; nothing changed
    "limit",  # over the per-turn operation limit; not run
    "internal",  # a bug in automem, caught so that it never escapes the store (report it)
)


# How much of its input a result echoes (``OpResult.to_json``): each argument and unparsed line up to ECHO_CHARS
# characters, at most ECHO_ARGS arguments, an error message up to ERROR_CHARS; the rest is replaced by a marker
# that says how much was cut. A 50 MB argument that a quota refuses is not printed back whole. Only the echo is
# shortened: the operation, the op log and replay see every character.
ECHO_CHARS = 200
ECHO_ARGS = 16
ERROR_CHARS = 1000


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """``text``, or its first ``limit`` characters and a marker saying how many more were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


def _echo_args(args: list[str]) -> list[str]:
    out = [shorten(a) for a in args[:ECHO_ARGS]]
    if len(args) > ECHO_ARGS:
        out.append(f"... [{len(args) - ECHO_ARGS} more arguments cut]")
    return out


@dataclass
class OpResult:
    """What one operation (or one unparseable fragment) returned to the model."""

    op: str | None
    args: list[str] = field(default_factory=list)
    ok: bool = True
    output: str = ""
    error: str | None = None
    error_kind: str | None = None
    bytes_delta: int = 0
    cut_chars: int = 0
    raw: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object the CLI prints: ``op``, ``args``, ``ok`` and ``output`` or ``error``.

        Echoed input (``args``, ``raw``) and the error message are shortened (``ECHO_CHARS``, ``ECHO_ARGS``,
        ``ERROR_CHARS``), with a marker saying how much was cut; the output is already bounded by its quota.
        """
        out: dict[str, Any] = {"op": self.op, "args": _echo_args(self.args), "ok": self.ok}
        if self.ok:
            out["output"] = self.output
            if self.cut_chars:
                out["cut_chars"] = self.cut_chars
        else:
            out["error"] = self.error if self.error is None else shorten(self.error, ERROR_CHARS)
            out["error_kind"] = self.error_kind
            if self.op is None:
                out["raw"] = shorten(self.raw)
        if self.bytes_delta:
            out["bytes_delta"] = self.bytes_delta
        return out

    def render(self) -> str:
        """One block of text for the model's next prompt."""
        head = self.op or "?"
        if self.args:
            head += " " + " ".join(self.args)[:80]
        if not self.ok:
            return f"[{head}] ERROR: {self.error}"
        body = self.output if self.output else "(ok)"
        return f"[{head}]\n{body}"


def printable(text: str) -> str:
    """``text`` with any lone surrogate (undecodable input) shown as ``\\udcff``, so it encodes as UTF-8.

    Error results echo what the model or user wrote; a lone surrogate there would make the JSON output and
    the stored trajectory fail to encode.
    """
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def error(op: str | None, args: list[str], kind: str, message: str, raw: str = "") -> OpResult:
    """An error result of the given kind; echoed arguments and text are made encodable."""
    assert kind in ERROR_KINDS, kind
    return OpResult(
        op=op,
        args=[printable(a) if isinstance(a, str) else repr(a) for a in args],
        ok=False,
        error=printable(message),
        error_kind=kind,
        raw=printable(raw),
    )


@dataclass(frozen=True)
class OpRecord:
    """One executed operation in the op log: its arguments, never the resulting file content.

    The memory state at any step is rebuilt from these records with ``automem.memory.replay``.
    """

    step: int
    phase: str
    turn: int
    seq: int
    op: str | None
    args: tuple[str, ...]
    ok: bool
    read_only: bool
    error_kind: str | None = None
    bytes_delta: int = 0
    output_chars: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and was a tenth of the per-step cost.
        return {
            "step": self.step,
            "phase": self.phase,
            "turn": self.turn,
            "seq": self.seq,
            "op": self.op,
            "args": list(self.args),
            "ok": self.ok,
            "read_only": self.read_only,
            "error_kind": self.error_kind,
            "bytes_delta": self.bytes_delta,
            "output_chars": self.output_chars,
        }
