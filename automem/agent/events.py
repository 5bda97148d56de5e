"""What the agent emits while it plays: one event per model turn, one per environment step, one per episode.

Together with the store's ``OpRecord``s (the op log) these are everything the trajectory store keeps. A field
added here needs its column: ``automem.trajectory.schemas.ORIGINS`` says which column holds each field, and
``tests/unit/test_trajectory_schema.py`` fails on a field without one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TurnEvent:
    """One model call."""

    episode_id: str
    step: int
    phase: str  # "log" | "plan" | "action"
    turn: int
    model: str
    prompt_tokens: int  # as the server counted them (0 if it did not say)
    prompt_tokens_est: int  # the client's count, used for the budget
    prefix_hash: str  # hash of the static prefix (system message); equal across an episode's turns
    completion: str
    completion_tokens: int
    latency_s: float
    constraint: str | None  # the regex sent, or None in free mode
    results: list[dict[str, Any]] = field(default_factory=list)  # memory-op results, as OpResult.to_json
    messages: list[dict[str, str]] = field(default_factory=list)  # the prompt after the system message
    action: str | None = None  # the action committed (action phase)
    action_valid: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepEvent:
    """One environment step: what the agent saw, what it did, what came back."""

    episode_id: str
    step: int
    observation: str  # the observation the agent acted on
    action: str  # the action actually taken (after any fallback)
    action_index: int
    action_text: str  # what the model wrote
    action_valid: bool  # False when the fallback action was used
    reward: float
    terminated: bool
    truncated: bool
    progression: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # shallow on purpose: the writer serialises info at once


@dataclass
class EpisodeEnd:
    """The episode's summary."""

    episode_id: str
    env_id: str
    seed: int | None
    steps: int
    episode_return: float
    progression: float
    terminated: bool
    truncated: bool
    invalid_actions: int
    turns: int
    prompt_tokens: int
    completion_tokens: int
    llm_seconds: float
    env_seconds: float
    wall_seconds: float
    op_errors: int
    memory_files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
