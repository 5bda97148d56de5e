"""Checks a rollout makes before anything is written: settings that would fail every attempt, or exhaust the
driver, are refused up front with one line naming the setting."""

from __future__ import annotations

import math

from automem.llm.tokens import ApproxTokenCounter, TokenCounter
from automem.scaffold.schema import Scaffold

MIN_CONTEXT_WINDOW = 256
"""The smallest context window a scaffold can be budgeted for (its ``context.max_prompt_tokens`` floor)."""


def check_timeout(name: str, value: float | None) -> None:
    """A timeout is None (no limit) or a finite number of seconds above 0.

    Raises:
        ValueError: naming ``name`` (``nan``, ``inf`` and non-positive values are refused).
    """
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds (got {value!r})")


def check_context_window(value: int) -> None:
    """Raises ValueError unless ``value`` is a plausible model context length."""
    if not MIN_CONTEXT_WINDOW <= value <= 10_000_000:
        raise ValueError(
            f"--context-window must be between {MIN_CONTEXT_WINDOW} and 10,000,000 tokens (got {value})"
        )


def check_scaffold_fits(
    scaffold: Scaffold, env_id: str, context_window: int, counter: TokenCounter | None = None
) -> None:
    """The scaffold's budgets fit the model's window, and its static prompt fits its budget on ``env_id``.

    Args:
        counter: the served model's tokenizer when known; else a deliberately generous estimate (4 bytes a
            token), so only a scaffold that cannot fit under any reasonable tokenizer is refused here. The
            rollout checks again with the real tokenizer once the endpoint is known.

    Raises:
        ValueError: what does not fit, and what to change.
    """
    from automem.agent.agent import Agent, ModelRoute
    from automem.envs import make_env

    env = make_env(env_id)
    try:
        actions = env.actions
    finally:
        env.close()
    agent = Agent(
        scaffold,
        memory=ModelRoute(None, "check"),  # type: ignore[arg-type]  # never called
        counter=counter or ApproxTokenCounter(bytes_per_token=4.0),
        context_window=context_window,
    )
    try:
        agent.check_fits(actions)
    except ValueError as exc:
        raise ValueError(f"scaffold {scaffold.id} on {env_id}: {exc}") from None
