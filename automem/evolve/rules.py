"""The ``rules`` reviewer's knowledge: evidence read from the stored episodes, and rules that turn it into patches.

No model is involved, so Loop 1 runs offline. :func:`gather_evidence` counts, per memory file, what the agent did
with it in a run (failed reads of a file that does not exist, appends and the redundant ones, reads, writes) and how
often memory turns ran into the completion cap. Each rule is a plain function ``(evidence, scaffold) -> Proposal |
None`` that fires on one diagnostic, with its threshold beside it:

=================  ==================================================  ===========================================
rule               fires when                                          proposes
=================  ==================================================  ===========================================
``missing_file``   reads of a file that does not exist, >= 3 and       give the file initial content (in the schema)
                   >= 10% of the run's reads                           or add it to the schema, with a purpose
``stray_files``    writes to files outside the schema, >= 5 and        allow only the schema's files
                   >= 30% of writes (new files allowed)                (``allow_new_files: false``)
``keyed_file``     appends to a file that repeat one of its lines,     keep it as ``key: value`` lines updated with
                   >= 3 and >= 30% of its appends                      UPSERT (its purpose and the LOG prompt say so)
``token_cap``      memory turns that end at the completion cap,        raise ``sampling.memory_max_tokens`` (x1.5, up
                   >= 20% of memory turns                              to 512), else lower ``max_ops_per_turn``
``unread_memory``  a schema file written >= 5 times, never read and    show it in every prompt
                   not in the prompt                                   (``context.include_files``)
``parse_errors``   unreadable operations (no parse, no such operation,  send the turn grammar (``constrained: true``)
                   bad arguments), >= 20% of ops, with the grammar off
=================  ==================================================  ===========================================

Rules are tried in that order; the reviewer proposes the first patch it has not tried before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from automem.diagnostics.memory_quality import norm_line
from automem.scaffold.schema import Scaffold
from automem.trajectory import PHASE_ORDER_SQL

READ_LIKE = frozenset({"READ", "TAIL", "COUNT", "SEARCH"})
WRITE_OPS = frozenset({"APPEND", "WRITE", "UPSERT", "REPLACE"})
UNREADABLE = frozenset({"parse", "unknown_op", "bad_args"})
"""Error kinds of an operation the model wrote in a shape the grammar would not have allowed."""


@dataclass
class Evidence:
    """What a run's episodes did with memory, per file (counts over all episodes)."""

    episodes: int = 0
    ops: int = 0
    reads: Counter[str] = field(default_factory=Counter)
    """Successful read-like operations naming the file (a ``SEARCH ... *`` counts for no file)."""
    read_ops: int = 0
    """All read-like operations, failed ones too."""
    missing_reads: Counter[str] = field(default_factory=Counter)
    """Read-like operations that failed because the file does not exist."""
    writes: Counter[str] = field(default_factory=Counter)
    appends: Counter[str] = field(default_factory=Counter)
    redundant_appends: Counter[str] = field(default_factory=Counter)
    """Appends whose every line the same episode had already appended to the file."""
    parse_errors: int = 0
    """Operations that failed as ``UNREADABLE`` (not parsed, no such operation, wrong arguments)."""
    memory_turns: int = 0
    capped_turns: int = 0
    """Memory turns whose completion used the whole ``memory_max_tokens``."""


_OPS_SQL = """
SELECT episode_id, attempt, op, args, ok, error_kind FROM memory_ops
WHERE phase <> 'init' AND ({where})
ORDER BY run_id, episode_id, attempt, step, {phase_order}, turn, seq
"""
_TURNS_SQL = """
SELECT count(*) AS turns, count(*) FILTER (WHERE completion_tokens >= ?) AS capped
FROM turns WHERE phase IN ('log', 'plan') AND ({where})
"""


def gather_evidence(con: Any, scaffold: Scaffold, run_id: str | None = None) -> Evidence:
    """Count what the committed episodes (of ``run_id``, or all) of ``con`` did with memory.

    Args:
        con: a connection from ``automem.trajectory.connect``.
        scaffold: the scaffold the run played (its completion cap decides which turns were cut).
    """
    where, params = ("run_id = ?", [run_id]) if run_id else ("true", [])
    ev = Evidence()
    ev.episodes = con.execute(f"SELECT count(*) FROM episodes WHERE {where}", params).fetchall()[0][0]
    seen: dict[tuple[str, int, str], set[str]] = {}
    for episode, attempt, op, args, ok, kind in con.execute(
        _OPS_SQL.format(where=where, phase_order=PHASE_ORDER_SQL), params
    ).fetchall():
        ev.ops += 1
        name = args[0] if args else ""
        if op == "SEARCH":
            name = args[1] if len(args) > 1 and args[1] != "*" else ""
        if kind in UNREADABLE:
            ev.parse_errors += 1
        if op in READ_LIKE:
            ev.read_ops += 1
            if ok and name:
                ev.reads[name] += 1
            elif kind == "missing" and name:
                ev.missing_reads[name] += 1
        if op in WRITE_OPS and ok:
            ev.writes[name] += 1
        if op == "APPEND" and ok and len(args) > 1:
            ev.appends[name] += 1
            lines = {norm_line(x) for x in args[1].splitlines() if x.strip()}
            have = seen.setdefault((episode, attempt, name), set())
            if lines and lines <= have:
                ev.redundant_appends[name] += 1
            have |= lines
    turns, capped = con.execute(
        _TURNS_SQL.format(where=where), [scaffold.sampling.memory_max_tokens, *params]
    ).fetchall()[0]
    ev.memory_turns, ev.capped_turns = turns, capped
    return ev


@dataclass(frozen=True)
class Proposal:
    """A rule's patch, the rule's name and the finding that triggered it (the patch's rationale)."""

    rule: str
    finding: str
    patch: dict[str, Any]


def _files(scaffold: Scaffold) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in scaffold.files]


def missing_file(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """Reads of a file that does not exist: make it exist from the start, with a purpose the prompt shows."""
    for name, n in ev.missing_reads.most_common():
        if n < 3 or n < 0.1 * ev.read_ops:
            return None
        files = _files(scaffold)
        known = {f["name"]: f for f in files}
        if name in known:
            f = known[name]
            if f["initial"]:
                continue
            f["initial"] = f"# {name}: {f['purpose']}\n"[:200]
        else:
            if len(files) >= scaffold.quotas.max_files:
                continue
            purpose = f"what you look up under {name}; write it as you learn it"
            files.append({"name": name, "purpose": purpose, "initial": f"# {name}: {purpose}\n"})
        finding = f"{n} of {ev.read_ops} reads failed because {name} does not exist"
        return Proposal("missing_file", finding, {"files": files})
    return None


def stray_files(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """Writes scattered over files the schema does not name: keep the agent to the schema's files."""
    if not scaffold.allow_new_files or not scaffold.files:
        return None
    known = set(scaffold.file_names)
    stray = {n: c for n, c in ev.writes.items() if n not in known}
    total = sum(ev.writes.values())
    n = sum(stray.values())
    if n < 5 or n < 0.3 * total:
        return None
    top = ", ".join(name for name, _ in sorted(stray.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    finding = f"{n} of {total} writes went to {len(stray)} files outside the schema (e.g. {top})"
    return Proposal("stray_files", finding, {"allow_new_files": False})


def keyed_file(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """Appends that repeat a file's lines: keep the file as ``key: value`` lines, updated in place with UPSERT."""
    for name, n in ev.redundant_appends.most_common():
        if n < 3 or n < 0.3 * ev.appends[name]:
            return None
        files = _files(scaffold)
        f = next((f for f in files if f["name"] == name), None)
        if f is None or "UPSERT" in f["purpose"]:
            continue
        f["purpose"] = f"{f['purpose']}; one 'key: value' line per fact, updated with UPSERT (never repeated)"
        log = scaffold.prompts.log.rstrip()
        log += f"\nUpdate {name} with UPSERT {name} KEY VALUE instead of appending a line it already has."
        ops = (
            list(scaffold.operations) if "UPSERT" in scaffold.operations else [*scaffold.operations, "UPSERT"]
        )
        finding = f"{n} of {ev.appends[name]} appends to {name} repeated a line it already had"
        return Proposal("keyed_file", finding, {"files": files, "prompts": {"log": log}, "operations": ops})
    return None


def token_cap(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """Memory turns cut at the completion cap: give them more tokens, or ask for fewer operations a turn."""
    if not ev.memory_turns or ev.capped_turns < 0.2 * ev.memory_turns:
        return None
    finding = f"{ev.capped_turns} of {ev.memory_turns} memory turns ended at the {scaffold.sampling.memory_max_tokens}-token cap"
    cap = scaffold.sampling.memory_max_tokens
    if cap < 512:
        return Proposal("token_cap", finding, {"sampling": {"memory_max_tokens": min(512, int(cap * 1.5))}})
    if scaffold.quotas.max_ops_per_turn > 1:
        return Proposal(
            "token_cap", finding, {"quotas": {"max_ops_per_turn": scaffold.quotas.max_ops_per_turn - 1}}
        )
    return None


def unread_memory(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """A file the agent keeps writing and never reads: put its last lines in every prompt."""
    for f in scaffold.files:
        if ev.writes[f.name] >= 5 and not ev.reads[f.name] and f.name not in scaffold.context.include_files:
            finding = f"{f.name} was written {ev.writes[f.name]} times and never read"
            include = [*scaffold.context.include_files, f.name]
            return Proposal("unread_memory", finding, {"context": {"include_files": include}})
    return None


def parse_errors(ev: Evidence, scaffold: Scaffold) -> Proposal | None:
    """Operations that do not parse while the grammar is off: turn the grammar on."""
    if scaffold.constrained or not ev.ops or ev.parse_errors < 0.2 * ev.ops:
        return None
    finding = f"{ev.parse_errors} of {ev.ops} operations did not parse"
    return Proposal("parse_errors", finding, {"constrained": True})


Rule = Callable[[Evidence, Scaffold], Proposal | None]
RULES: tuple[Rule, ...] = (missing_file, stray_files, keyed_file, token_cap, unread_memory, parse_errors)
"""Every rule, in the order the reviewer tries them."""


def proposals(ev: Evidence, scaffold: Scaffold) -> list[Proposal]:
    """What every rule proposes for this evidence, in rule order."""
    return [p for rule in RULES if (p := rule(ev, scaffold)) is not None]


__all__ = [
    "RULES",
    "Evidence",
    "Proposal",
    "gather_evidence",
    "keyed_file",
    "missing_file",
    "parse_errors",
    "proposals",
    "stray_files",
    "token_cap",
    "unread_memory",
]
