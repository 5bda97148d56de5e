"""Digests: a compact, token-budgeted text view of a set of stored episodes, for Loop 1's reviewers.

A reviewer (a rules engine or an LLM) reads a digest and proposes a revision of the scaffold. ``build_digest``
reads the committed views of a store (``automem.trajectory.connect``), measures each episode with the
diagnostics' own definitions (``memory_quality.analyse_ops``, ``actions.analyse_steps``) and writes:

1. **Header and diagnostics** over the episodes: progression (mean and per episode), end of each episode
   (deaths, stalls), failed operations by error kind with example messages, redundant writes and the files
   they went to, memory utility (lines read back / lines written), empty searches and reads of missing files,
   unproductive and invalid actions, memory growth (final and peak bytes). Rates are ratios of sums over the
   episodes, as in ``diagnostics.summary``.
2. **Problem turns**, sampled to show problems: a turn with a failed operation, a turn with a redundant write,
   a turn whose read returned nothing (a SEARCH with no output, a READ or TAIL of a missing file), and the last
   steps of an episode that ended in a death or a stall. Each is shown with its episode, step and phase, its
   operations (ok or the error, the output shortened) and the outcome (the action taken, the progression after
   the step, the first line of the next observation). The choice is deterministic for a given ``seed``: the
   candidates of each kind are shuffled by a seeded generator, interleaved across episodes, and the kinds are
   taken in turn, so that a short digest still shows every kind and several episodes.
3. **Final memory files** of the best and the worst episode by progression (one when they are the same).

Definitions: an episode ended in a **death** when it terminated (not truncated at the step cap) with
progression below 1; it ended in a **stall** when its last ``STALL_STEPS`` or more assessed actions changed
nothing (``actions.analyse_steps``' notion of an unproductive action). Operation outputs and error messages are
not stored in the op log; they are recomputed by replaying it (``MemoryStore.run_op`` on the replayed memory),
and an output is cut to the length the live run showed (``output_chars``). An error that replay cannot
reproduce (a quota, say: replay runs without quotas) is shown by its kind only.

Budget policy: the budget is in tokens of the reviewer's tokenizer (``counter``), and the digest never exceeds
it: every decision measures the whole assembled text with ``counter.count``. Sections are filled greedily in
the order above. Problem turns are added one by one in the sampler's order, each in full until one does not
fit, then the rest in a compact form (heading and outcome only) until one does not fit even so; memory files
are added whole, or the first that does not fit is cut to the lines that fit. When
even the header does not fit, its last lines are dropped and then its text is cut. Everything left out is said
in the text with a marker (``[… 7 more problem turns left out for the budget]``) and listed in ``Digest.cut``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automem.evolve.digest_episodes import (
    END_STEPS,
    KINDS,
    STALL_STEPS,
    Episode,
    Item,
    Key,
    load_episodes,
    problem_items,
    sample_items,
    window_start,
)
from automem.memory.ops import READ_ONLY_OPS
from automem.memory.quotas import UNLIMITED_QUOTAS
from automem.memory.store import MemoryStore
from automem.trajectory import Storage, connect

if TYPE_CHECKING:
    import duckdb

    from automem.llm.tokens import TokenCounter

MIN_BUDGET = 16
"""The smallest budget accepted: below it not even a cut header and its marker fit."""
_KIND_LABEL = {
    "failed_op": "failed operation",
    "redundant_write": "redundant write",
    "empty_read": "read returned nothing",
    "death": "death",
    "stall": "stall",
}
_OUTPUT_CHARS = 100
_ARG_CHARS = 60
_OBS_CHARS = 100
_FILE_CHARS = 1500
_MAX_LISTED = 12
# Errors that replay reproduces exactly (they depend on the memory's state, not on the quotas), so re-running
# the operation on the replayed memory gives the live message and changes nothing.
_REPRODUCIBLE = frozenset({"parse", "unknown_op", "bad_args", "path", "missing", "exists", "not_found"})


@dataclass(frozen=True)
class Digest:
    """A digest and what went into it.

    Attributes:
        text: the digest.
        tokens: ``counter.count(text)``; never more than ``budget``.
        budget: the budget it was built for.
        episodes: how many episodes it covers.
        turns_shown: problem items (turns, or the steps before an episode's end) shown, in full or compact.
        turns_available: problem items found, before ``max_turns`` and the budget.
        sections: tokens of each section's text alone (``header``, ``turns``, ``memory``), as shown.
        cut: what was left out or shortened for the budget, one line each.
    """

    text: str
    tokens: int
    budget: int
    episodes: int
    turns_shown: int
    turns_available: int
    sections: dict[str, int] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)


def _one_line(text: str | None, limit: int) -> str:
    """``text`` on one line (newlines shown as ``⏎``), cut to ``limit`` characters with ``…``."""
    flat = (text or "").replace("\r\n", "\n").rstrip("\n").replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first_line(text: str | None, limit: int = _OBS_CHARS) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return _one_line(lines[0] if lines else "", limit)


def _rate(num: float, den: float) -> str:
    return f"{num:g}/{den:g} ({num / den:.0%})" if den else f"{num:g}/0 (n/a)"


def _replay_results(ep: Episode) -> list[str]:
    """What each op of the episode's sorted log showed, on one line: ``ok``, its output, or its error."""
    store = MemoryStore.in_memory(quotas=UNLIMITED_QUOTAS)
    redundant = set(ep.mq.redundant_ops)
    out: list[str] = []
    for i, row in enumerate(ep.ops):
        op, args = row["op"], list(row["args"] or [])
        if row["ok"]:
            result = store.run_op(op, args)
            if op in READ_ONLY_OPS:
                shown = result.output[: row["output_chars"] or 0]
                if not shown:
                    out.append("ok, empty")
                else:
                    out.append("ok: " + _one_line(shown, _OUTPUT_CHARS))
            else:
                out.append("ok, redundant" if i in redundant else "ok")
            continue
        kind = row["error_kind"] or "unknown"
        message = ""
        if op is not None and (op in READ_ONLY_OPS or kind in _REPRODUCIBLE):
            failed = store.run_op(op, args)
            if not failed.ok and failed.error_kind == kind:
                message = ": " + _one_line(failed.error, _OUTPUT_CHARS)
        out.append(f"ERROR {kind}{message}")
    return out


def _op_text(row: Mapping[str, Any]) -> str:
    args = " ".join(_one_line(a, _ARG_CHARS) for a in (row["args"] or []))
    return f"{row['op'] or '(unparsed)'} {args}".rstrip()


# -- candidates and sampling ------------------------------------------------------------------------------------


def _outcome(ep: Episode, step: int) -> str:
    by_step = {s["step"]: s for s in ep.steps}
    row = by_step.get(step)
    if row is None:
        return "outcome: (no step row)"
    valid = "" if row["action_valid"] is not False else " (invalid, default taken)"
    nxt = by_step.get(step + 1)
    after = (
        f'next obs "{_first_line(nxt["observation"])}"' if nxt else f"episode ended ({ep.meta.get('status')})"
    )
    return f'outcome: action "{_one_line(row["action"], 40)}"{valid}, progression {row["progression"] or 0:.2f}, {after}'


def _render_item(it: Item, shown: Callable[[Episode], list[str]], compact: bool) -> str:
    ep = it.episode
    label = ", ".join(_KIND_LABEL[k] for k in it.kinds)
    if it.phase is None:
        last = ep.steps[-1]["step"]
        first = window_start(ep)
        stall = (
            f", {len(ep.unproductive_steps)} unproductive actions at the end" if ep.unproductive_steps else ""
        )
        head = (
            f"- [{label}] {ep.name} steps {first}-{last} of {len(ep.steps)}: "
            f"{ep.meta.get('status')}, progression {ep.progression:.2f}{stall}"
        )
        if compact:
            return head
        results = shown(ep)
        lines = [head]
        for s in ep.steps:
            if s["step"] < first:
                continue
            ops = [
                f"{_op_text(r)} -> {results[i]}"
                for i, r in enumerate(ep.ops)
                if r["step"] == s["step"] and r["phase"] != "init"
            ]
            lines.append(
                f'  step {s["step"]}: obs "{_first_line(s["observation"], 60)}" -> "{_one_line(s["action"], 40)}"'
                f"{'' if s['action_valid'] is not False else ' (invalid)'}, progression {s['progression'] or 0:.2f}"
            )
            lines.extend(f"    {_one_line(o, _OUTPUT_CHARS + _ARG_CHARS)}" for o in ops[:4])
            if len(ops) > 4:
                lines.append(f"    [… {len(ops) - 4} more operations]")
        return "\n".join(lines)
    head = f"- [{label}] {ep.name} step {it.step} {it.phase} turn {it.turn}"
    outcome = "  " + _outcome(ep, it.step)
    if compact:
        return head + "\n" + outcome
    results = shown(ep)
    lines = [head]
    for i, r in enumerate(ep.ops):
        if (r["step"], r["phase"], r["turn"]) == (it.step, it.phase, it.turn):
            lines.append(f"  {_op_text(r)} -> {results[i]}")
    lines.append(outcome)
    return "\n".join(lines)


def _header_lines(eps: list[Episode], examples: dict[str, list[str]]) -> list[str]:
    n = len(eps)
    runs = sorted({ep.key[0] for ep in eps})
    envs = sorted({str(ep.meta.get("env_id")) for ep in eps})
    scaffolds = sorted({str(ep.meta.get("scaffold_id")) for ep in eps})
    lines = [
        f"# Trajectory digest: {n} episode{'s' * (n != 1)}; run {', '.join(runs)}; env {', '.join(envs)}; "
        f"scaffold {', '.join(scaffolds)}",
        "## Diagnostics",
    ]
    mean = sum(ep.progression for ep in eps) / n
    per = [f"{ep.key[1]}(seed {ep.meta.get('seed')})={ep.progression:.2f}" for ep in eps[:_MAX_LISTED]]
    more = f" … {n - _MAX_LISTED} more" if n > _MAX_LISTED else ""
    lines.append(f"progression: mean {mean:.2f}; {' '.join(per)}{more}")
    statuses = Counter(str(ep.meta.get("status")) for ep in eps)
    ends = Counter(ep.end for ep in eps if ep.end)
    lines.append(
        "episode ends: "
        + ", ".join(f"{s} {c}" for s, c in sorted(statuses.items()))
        + f"; deaths {ends['death']}, stalls {ends['stall']}; steps {sum(len(ep.steps) for ep in eps)}"
    )
    ops = sum(ep.mq.ops for ep in eps)
    errors: Counter[str] = Counter()
    for ep in eps:
        errors.update(ep.mq.errors_by_kind)
    by_kind = ", ".join(f"{k} {c}" for k, c in sorted(errors.items(), key=lambda kc: (-kc[1], kc[0])))
    lines.append(
        f"failed operations: {_rate(sum(errors.values()), ops)} of operations"
        + (f"; {by_kind}" if by_kind else "")
    )
    for kind in sorted(examples, key=lambda k: (-errors[k], k)):
        lines.append(f"  e.g. {kind}: " + "; ".join(examples[kind]))
    writes = sum(ep.mq.writes for ep in eps)
    redundant = sum(ep.mq.redundant_writes for ep in eps)
    files: Counter[str] = Counter()
    for ep in eps:
        files.update((ep.ops[i]["args"] or ["?"])[0] for i in ep.mq.redundant_ops)
    where = ", ".join(
        f"{f} {c}" for f, c in sorted(files.items(), key=lambda fc: (-fc[1], fc[0]))[:_MAX_LISTED]
    )
    lines.append(
        f"redundant writes: {_rate(redundant, writes)} of writes" + (f"; to {where}" if where else "")
    )
    read_back = sum(ep.mq.lines_read_back for ep in eps)
    written = sum(ep.mq.lines_written for ep in eps)
    lines.append(f"memory utility: {_rate(read_back, written)} of written lines were read back later")
    searches = sum(ep.mq.searches for ep in eps)
    empty = sum(ep.mq.empty_searches for ep in eps)
    missing_reads = sum(
        1
        for ep in eps
        for r in ep.ops
        if not r["ok"] and r["op"] in ("READ", "TAIL") and r["error_kind"] == "missing"
    )
    lines.append(
        f"empty searches: {_rate(empty, searches)} of searches; reads of missing files: {missing_reads}"
    )
    unproductive = sum(ep.unproductive for ep in eps)
    assessed = sum(ep.assessed for ep in eps)
    invalid = sum(ep.invalid for ep in eps)
    lines.append(
        f"unproductive actions: {_rate(unproductive, assessed)} of assessed actions; "
        f"invalid actions: {_rate(invalid, sum(len(ep.steps) for ep in eps))} of steps"
    )
    finals = [ep.mq.final_bytes for ep in eps]
    peaks = [max((b for b, _, _ in ep.mq.size_by_step.values()), default=0) for ep in eps]
    lines.append(
        f"memory growth: final bytes mean {sum(finals) / n:.0f}, max {max(finals)}; peak bytes max {max(peaks)}; "
        + " ".join(
            f"{ep.key[1]}={f}/{p}" for ep, f, p in list(zip(eps, finals, peaks, strict=True))[:_MAX_LISTED]
        )
        + " (final/peak)"
    )
    return lines


def _error_examples(eps: list[Episode], shown: Callable[[Episode], list[str]]) -> dict[str, list[str]]:
    """Up to two example failed operations per error kind, with the message replay gives, in log order."""
    out: dict[str, list[str]] = {}
    for ep in eps:
        if not ep.mq.op_errors:
            continue
        results = shown(ep)
        for i, row in enumerate(ep.ops):
            if row["ok"] or row["phase"] == "init":
                continue
            kind = row["error_kind"] or "unknown"
            examples = out.setdefault(kind, [])
            text = f"{_one_line(_op_text(row), 50)} -> {_one_line(results[i], 80)}"
            if len(examples) < 2 and text not in examples:
                examples.append(text)
    return out


def _file_block(ep: Episode, row: Mapping[str, Any], max_lines: int | None) -> str:
    content = (row["content"] or "").rstrip("\n")
    lines = content.split("\n") if content else []
    head = f"### {ep.name} {row['name']} ({row['lines']} lines, {row['bytes']} bytes)"
    keep = lines if max_lines is None else lines[:max_lines]
    body = [_one_line(line, 200) for line in keep]
    text = "\n".join([head, *body])
    if len(text) > _FILE_CHARS:
        text = text[:_FILE_CHARS] + "…"
    if len(keep) < len(lines):
        text += f"\n[… {len(lines) - len(keep)} more lines cut for the budget]"
    return text


# -- assembly ---------------------------------------------------------------------------------------------------


def build_digest(
    con_or_root: duckdb.DuckDBPyConnection | str | os.PathLike[str] | Storage,
    *,
    counter: TokenCounter,
    budget: int,
    run_id: str | None = None,
    episodes: list[tuple[str, str, int]] | None = None,
    max_turns: int = 12,
    seed: int = 0,
) -> Digest:
    """A digest of stored episodes for a reviewer, at most ``budget`` tokens of ``counter``'s tokenizer.

    Args:
        con_or_root: a connection from ``automem.trajectory.connect`` (left open), or a store's root (local
            folder, ``s3://...`` or ``Storage``), opened and closed here.
        counter: the reviewer's tokenizer (``automem.llm.tokens``).
        budget: the most tokens the text may have; at least ``MIN_BUDGET``.
        run_id: only this run's episodes.
        episodes: only these episodes, as ``(run_id, episode_id, attempt)``; every one must be committed.
        max_turns: at most this many problem items (turns, or the steps before an episode's end).
        seed: seeds the choice of problem items; the same store and arguments give the same text.

    Returns:
        The digest (see the module docstring for its layout and budget policy).

    Raises:
        ValueError: ``budget`` below ``MIN_BUDGET``; no committed episode matches the selection (a digest of
            nothing would give a reviewer nothing to judge); a selected episode is not committed.
    """
    if budget < MIN_BUDGET:
        raise ValueError(
            f"digest budget of {budget} tokens is too small: it must be at least {MIN_BUDGET} tokens"
        )
    if hasattr(con_or_root, "sql"):
        eps = load_episodes(con_or_root, run_id, episodes)  # type: ignore[arg-type]
    else:
        root = con_or_root if isinstance(con_or_root, Storage) else os.fspath(con_or_root)
        con = connect(root)
        try:
            eps = load_episodes(con, run_id, episodes)
        finally:
            con.close()
    if not eps:
        where = f" of run {run_id!r}" if run_id is not None else ""
        raise ValueError(f"no committed episodes{where} to digest: the selection is empty")
    return _assemble(eps, counter, budget, max_turns, seed)


def _assemble(eps: list[Episode], counter: TokenCounter, budget: int, max_turns: int, seed: int) -> Digest:
    cache: dict[Key, list[str]] = {}

    def shown(ep: Episode) -> list[str]:
        if ep.key not in cache:
            cache[ep.key] = _replay_results(ep)
        return cache[ep.key]

    def fits(text: str) -> bool:
        return counter.count(text) <= budget

    cut: list[str] = []
    header = _header_lines(eps, _error_examples(eps, shown))
    candidates = problem_items(eps)
    chosen = sample_items(candidates, max_turns, seed)
    if len(candidates) > len(chosen):
        cut.append(f"{len(candidates) - len(chosen)} problem items beyond max_turns={max_turns}")

    # 1. Header and diagnostics: whole, else its first lines, else its text cut.
    head_text = "\n".join(header)
    if not fits(head_text):
        marker = "[… rest of the header cut for the budget]"
        kept = len(header) - 1
        while kept > 0 and not fits("\n".join([*header[:kept], marker])):
            kept -= 1
        if kept > 0:
            head_text = "\n".join([*header[:kept], marker])
            cut.append(f"{len(header) - kept} header lines")
        else:
            first = header[0]
            lo, hi = 0, len(first)  # the longest prefix that fits, by bisection
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if fits(first[:mid] + " " + marker):
                    lo = mid
                else:
                    hi = mid - 1
            head_text = (first[:lo] + " " + marker) if lo else marker
            if not fits(head_text):
                head_text = "[…]"
            cut.append("the header, cut to its first characters")
        cut.append(f"all {len(chosen)} problem items")
        cut.append("the final memory files")
        return _digest(head_text, counter, budget, len(eps), 0, len(candidates), {"header": head_text}, cut)

    # 2. Problem turns: each whole, else compact, until one does not fit.
    blocks: list[str] = []
    turns_title = f"## Problem turns ({len(candidates)} found)"

    def with_turns(extra: list[str], left: int) -> str:
        parts = [head_text, turns_title, *extra]
        if left:
            parts.append(f"[… {left} more problem turns left out for the budget]")
        return "\n".join(parts)

    turns_part: list[str] = []
    if chosen:
        compact: list[bool] = []
        for k, it in enumerate(chosen):
            left = len(chosen) - k - 1
            full = None if any(compact) else _render_item(it, shown, compact=False)
            if full is not None and fits(with_turns([*blocks, full], left)):
                blocks.append(full)
                compact.append(False)
                continue
            small = _render_item(it, shown, compact=True)
            if fits(with_turns([*blocks, small], left)):
                blocks.append(small)
                compact.append(True)
                continue
            break
        while blocks and not fits(with_turns(blocks, len(chosen) - len(blocks))):
            blocks.pop()  # the marker grew by a digit, or the tokenizer merged across a join
        if fits(with_turns(blocks, len(chosen) - len(blocks))):
            turns_part = [turns_title, *blocks]
            if len(blocks) < len(chosen):
                turns_part.append(
                    f"[… {len(chosen) - len(blocks)} more problem turns left out for the budget]"
                )
        if len(blocks) < len(chosen):
            cut.append(f"{len(chosen) - len(blocks)} of {len(chosen)} sampled problem item(s)")
        if any(compact[: len(blocks)]):
            cut.append(
                f"{sum(compact[: len(blocks)])} problem item(s) shown compact (heading and outcome only)"
            )
    elif fits(head_text + "\n" + turns_title + ": none"):
        turns_part = [turns_title + ": none"]
    body = "\n".join([head_text, *turns_part])

    # 3. Final memory files of the best and the worst episode.
    ranked = sorted(eps, key=lambda ep: (-ep.progression, ep.key))
    picks = [ranked[0]] + ([ranked[-1]] if len(ranked) > 1 else [])
    file_rows = [(ep, row) for ep in picks for row in ep.files]
    mem_blocks: list[str] = []
    mem_title = "## Final memory files (best and worst episode by progression)"
    left_files = 0
    if file_rows:
        for n, (ep, row) in enumerate(file_rows):
            remaining = len(file_rows) - n - 1

            def attempt(block: str, remaining: int = remaining) -> str:
                tail = [f"[… {remaining} more memory files left out for the budget]"] if remaining else []
                return "\n".join([body, mem_title, *mem_blocks, block, *tail])

            full = _file_block(ep, row, None)
            if fits(attempt(full)):
                mem_blocks.append(full)
                continue
            n_lines = len((row["content"] or "").rstrip("\n").split("\n"))
            lo, hi = 0, n_lines - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if fits(attempt(_file_block(ep, row, mid))):
                    lo = mid
                else:
                    hi = mid - 1
            block = _file_block(ep, row, lo)
            if fits(attempt(block)):
                mem_blocks.append(block)
                cut.append(f"{ep.name} {row['name']} cut to {lo} of {n_lines} lines")
            left_files = len(file_rows) - len(mem_blocks)
            break
        mem_part = [mem_title, *mem_blocks]
        if left_files:
            mem_part.append(f"[… {left_files} more memory files left out for the budget]")
            cut.append(f"{left_files} of {len(file_rows)} final memory files")
        if not mem_blocks:
            line = "[… final memory files left out for the budget]"
            mem_part = [line] if fits(body + "\n" + line) else []
        text = "\n".join([body, *mem_part])
        if not fits(text):  # a tokenizer that merges across the joins: drop the section rather than overflow
            mem_part, text = [], body
            cut.append("the final memory files")
    else:
        mem_part = [f"{mem_title}: none"]
        text = "\n".join([body, *mem_part]) if fits("\n".join([body, *mem_part])) else body
    sections = {"header": head_text, "turns": "\n".join(turns_part), "memory": "\n".join(mem_part)}
    return _digest(text, counter, budget, len(eps), len(blocks), len(candidates), sections, cut)


def _digest(
    text: str,
    counter: TokenCounter,
    budget: int,
    n_eps: int,
    shown: int,
    available: int,
    sections: dict[str, str],
    cut: list[str],
) -> Digest:
    tokens = counter.count(text)
    if tokens > budget:  # every step measured the whole text; this is a bug, never a silent overflow
        raise AssertionError(f"digest of {tokens} tokens exceeds its budget of {budget}")
    return Digest(
        text=text,
        tokens=tokens,
        budget=budget,
        episodes=n_eps,
        turns_shown=shown,
        turns_available=available,
        sections={name: counter.count(part) if part else 0 for name, part in sections.items()},
        cut=cut,
    )


__all__ = ["END_STEPS", "KINDS", "MIN_BUDGET", "STALL_STEPS", "Digest", "build_digest"]
