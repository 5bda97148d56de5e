"""The text-environment protocol every game implements (Gymnasium semantics, text in and out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ActionSpec:
    """One game action as shown to the model: its name and a one-line description."""

    name: str
    description: str


class InvalidActionError(ValueError):
    """Raised by ``TextEnv.step`` for an action that is neither a known name nor an index in range."""


@runtime_checkable
class TextEnv(Protocol):
    """A game played through text.

    ``info`` from ``reset`` and ``step`` always holds ``progression`` (a float in [0, 1], BALROG's measure) and
    ``step`` (steps taken so far in the episode).
    """

    env_id: str

    @property
    def actions(self) -> list[ActionSpec]:
        """The valid actions, in index order."""
        ...

    def reset(self, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode; the same seed gives the same observations, byte for byte."""
        ...

    def step(self, action: str | int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one action: ``(observation, reward, terminated, truncated, info)``.

        Raises:
            InvalidActionError: ``action`` is not valid (see ``validate_action``).
        """
        ...

    def close(self) -> None:
        """Release the game's resources."""
        ...


def validate_action(actions: list[ActionSpec], action: str | int) -> int | None:
    """The index of ``action`` (a case-insensitive name, or an index as int or digit string), or None."""
    if isinstance(action, bool):
        return None
    if isinstance(action, int):
        return action if 0 <= action < len(actions) else None
    text = str(action).strip().lower()
    if text.isdigit():
        index = int(text)
        return index if index < len(actions) else None
    for i, spec in enumerate(actions):
        if spec.name.lower() == text:
            return i
    return None
