"""Prompt building: static text first (cacheable), dynamic text last, cut to the token budget.

Every prompt of an episode starts with the same system message (the scaffold's system text, the operation help,
the file schema and the game's actions), so the server's prefix cache reuses it across steps. The step's
observation, the memory index, recent memory lines and the phase instruction follow in the user message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


def _render(ctx: StepContext, obs: str, recent: list[tuple[str, list[str]]]) -> str:
    parts = [f"## Step {ctx.step}"]
    if ctx.last_action is not None:
        parts.append(f"Last action: {ctx.last_action}{ctx.last_action_note}")
    parts.append(f"## Observation\n{obs}")
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
) -> str:
    """The user message for a step, cut until system + message fit ``budget`` tokens.

    Cuts, in order: the oldest recent-memory lines, then the observation (keeping its start), halving each time.

    Raises:
        ValueError: even the static prefix and instruction alone do not fit (the scaffold is too big).
    """
    obs = ctx.observation
    if len(obs) > max_observation_chars:
        obs = obs[:max_observation_chars] + "\n[observation cut]"
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
        if len(obs) > 200:
            obs = obs[: len(obs) // 2] + "\n[observation cut to fit the context]"
            continue
        raise ValueError(
            f"the static prompt does not fit {budget} tokens; shorten the scaffold's prompts or raise "
            "context.max_prompt_tokens"
        )


def fit_results(text: str, used_tokens: int, counter: TokenCounter, budget: int) -> str:
    """Cut an operation-results message so the conversation stays within ``budget`` tokens."""
    room = budget - used_tokens
    while text and counter.count(text) + 8 > room:
        if len(text) < 80:
            return "[results cut to fit the context]"
        text = text[: len(text) // 2] + "\n[results cut to fit the context]"
    return text
