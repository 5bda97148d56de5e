"""Prompt building: static text first (cacheable), dynamic text last, cut to the token budget.

Every prompt of an episode starts with the same system message (the scaffold's system text, the operation help,
the file schema and the game's actions), so the server's prefix cache reuses it across steps. The step's
observation, the memory index, recent memory lines and the phase instruction follow in the user message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from automem.envs.base import ActionSpec
from automem.llm.tokens import TokenCounter, count_messages
from automem.memory.ops import render_help
from automem.scaffold.schema import Scaffold


def static_prefix(scaffold: Scaffold, actions: list[ActionSpec]) -> str:
    """The system message: identical for every turn of an episode."""
    files = "\n".join(f"{f.name}: {f.purpose}" for f in scaffold.files) or "(none; create what you need)"
    acts = "\n".join(f"{a.name}: {a.description}" for a in actions)
    return (
        f"{scaffold.prompts.system.strip()}\n\n"
        f"## Memory operations (one per line; end each memory turn with DONE)\n"
        f"{render_help(scaffold.operations)}\n"
        "Quote an argument that has spaces in double quotes; the last text argument takes the rest of the line.\n\n"
        f"## Memory files\n{files}\n\n"
        f"## Game actions\n{acts}"
    )


def prefix_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class StepContext:
    """The dynamic part of a step's prompts, before cutting."""

    step: int
    last_action: str | None
    last_action_note: str
    observation: str
    memory_index: str
    recent: list[tuple[str, list[str]]]  # (file, last lines)
    # Actions the game takes at this step only (``automem.envs.base.actions_now``: NetHack's ``letter X``).
    extra_actions: list[ActionSpec] = field(default_factory=list)


def _render(ctx: StepContext, obs: str, recent: list[tuple[str, list[str]]]) -> str:
    parts = [f"## Step {ctx.step}"]
    if ctx.last_action is not None:
        parts.append(f"Last action: {ctx.last_action}{ctx.last_action_note}")
    parts.append(f"## Observation\n{obs}")
    if ctx.extra_actions:
        # Names only: the observation says what each answers (its question or menu lines).
        acts = ", ".join(a.name for a in ctx.extra_actions)
        parts.append(f"## Actions for this step only, besides the game actions\n{acts}")
    parts.append(f"## Memory files now\n{ctx.memory_index}")
    for name, lines in recent:
        if lines:
            parts.append(f"## Last lines of {name}\n" + "\n".join(lines))
    return "\n\n".join(parts)


def fit_context(
    ctx: StepContext,
    system: str,
    instruction: str,
    counter: TokenCounter,
    budget: int,
    max_observation_chars: int,
    min_observation_chars: int = 200,
    best_effort: bool = False,
) -> str:
    """The user message for a step, cut until system + message fit ``budget`` tokens.

    Cuts, in order: the oldest recent-memory lines, then the observation (keeping its start, and at least
    ``min_observation_chars`` of it), halving each time. With ``best_effort``, a message that cannot be cut
    enough is returned cut as far as it goes.

    Raises:
        ValueError: even the static prefix and instruction alone do not fit (the scaffold is too big), unless
            ``best_effort``.
    """
    full = ctx.observation
    if len(full) > max_observation_chars:
        full = full[:max_observation_chars] + "\n[observation cut]"
    obs, keep = full, len(full)
    recent = [(n, list(lines)) for n, lines in ctx.recent]

    def total(text: str) -> int:
        return count_messages(counter, [{"content": system}, {"content": text + "\n\n" + instruction}])

    while True:
        text = _render(ctx, obs, recent)
        if total(text) <= budget:
            return text + "\n\n" + instruction
        longest = max(recent, key=lambda r: len(r[1]), default=None)
        if longest is not None and longest[1]:
            del longest[1][: max(1, len(longest[1]) // 2)]
            continue
        if keep > min_observation_chars:  # strictly shorter each time, so this ends
            keep = max(min_observation_chars, keep // 2)
            obs = full[:keep] + "\n[observation cut to fit the context]"
            continue
        if best_effort:
            return text + "\n\n" + instruction
        raise ValueError(
            f"the static prompt does not fit {budget} tokens; shorten the scaffold's prompts or raise "
            "context.max_prompt_tokens"
        )


MORE_OPS = "More operations, one per line, then DONE; or DONE alone."
DROPPED = "[results dropped to fit the context]"
_CUT = "\n[results cut to fit the context]"
_RESULTS_FLOOR = 400  # characters of the latest results kept before the step context is cut


@dataclass
class MemoryTurn:
    """One earlier turn of a phase: what the model wrote and the rendered results of its operations."""

    completion: str
    results: str


def results_message(results: str, tail: str) -> str:
    """The user message that answers a memory turn: its results, then what to do next."""
    return f"Results:\n{results}\n\n{tail}".rstrip()


def render_conversation(
    system: str, context: str, turns: list[MemoryTurn], tail: str
) -> list[dict[str, str]]:
    """System message, step context, then each turn's completion and results; ``tail`` ends the last one."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": context}]
    for i, t in enumerate(turns):
        messages.append({"role": "assistant", "content": t.completion})
        last = i == len(turns) - 1
        messages.append({"role": "user", "content": results_message(t.results, tail if last else MORE_OPS)})
    return messages


class _MemoCounter:
    """A counter that remembers the count of each text it has seen (for the span of one fitting)."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self._counts: dict[str, int] = {}

    def count(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = self._counts[text] = self._counter.count(text)
        return n


def fit_conversation(
    system: str,
    context: str,
    turns: list[MemoryTurn],
    tail: str,
    counter: TokenCounter,
    budget: int,
    refit_context: Callable[[int], str] | None = None,
) -> tuple[list[dict[str, str]], int]:
    """The messages of a phase's next call, cut until they fit ``budget`` tokens, and their token count.

    The system message is never changed (the server's prefix cache keys on it). Cuts, in order, until the
    prompt fits: the results of the oldest turns (replaced by a marker), then the oldest turns themselves, so
    the latest turn always stays; then the latest turn's results, halving, down to ``_RESULTS_FLOOR``
    characters; then the step context, through ``refit_context(budget for system + context)``, which cuts it
    as far as it can; then the latest results further; last, the latest completion. ``turns`` is not changed.
    The count is ``count_messages(counter, messages)``, so callers need not count the messages again.

    Raises:
        ValueError: nothing left to cut and the prompt still does not fit (the scaffold is too big).
    """
    counter = _MemoCounter(counter)  # the cuts below count the same messages again and again
    turns = [MemoryTurn(t.completion, t.results) for t in turns]

    def size() -> int:
        return count_messages(counter, render_conversation(system, context, turns, tail))

    if (n := size()) <= budget:  # the common case: nothing to cut
        return render_conversation(system, context, turns, tail), n
    while len(turns) > 1 and size() > budget:
        if turns[0].results != DROPPED:
            turns[0].results = DROPPED
        else:
            del turns[0]
    last = turns[-1] if turns else None
    full = last.results if last else ""
    keep = len(full)

    def cut_results(floor: int) -> None:
        nonlocal keep
        while last is not None and size() > budget and keep > floor and last.results != DROPPED:
            keep = max(floor, keep // 2)
            last.results = full[:keep] + _CUT if keep >= 40 else DROPPED

    cut_results(min(keep, _RESULTS_FLOOR))
    over = size() - budget
    if over > 0 and refit_context is not None:
        context = refit_context(count_messages(counter, [{"content": system}, {"content": context}]) - over)
    cut_results(0)
    if last is not None and size() > budget:
        text = last.completion
        chars = len(text)
        while size() > budget and chars:
            chars //= 2
            last.completion = (
                text[:chars] + "\n[cut to fit the context]" if chars else "[cut to fit the context]"
            )
    if (n := size()) > budget:
        raise ValueError(
            f"the prompt does not fit {budget} tokens even cut to its static part; shorten the scaffold's "
            "prompts or raise context.max_prompt_tokens"
        )
    return render_conversation(system, context, turns, tail), n
