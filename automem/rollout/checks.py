"""A check a rollout makes before anything is written: a scaffold whose prompt cannot fit would fail every
attempt. (Settings are checked by ``RolloutConfig`` itself.)"""

from __future__ import annotations

from automem.llm.tokens import ApproxTokenCounter, TokenCounter
from automem.scaffold.schema import Scaffold


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
