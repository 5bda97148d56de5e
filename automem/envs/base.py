"""The text-environment protocol every game implements (Gymnasium semantics, text in and out)."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ActionSpec:
    """One game action as shown to the model: its name and a one-line description."""

    name: str
    description: str


class InvalidActionError(ValueError):
    """Raised by ``TextEnv.step`` for an action that is neither a known name nor an index in range."""


SEED_LIMIT = 2**64
"""Seeds are ints in ``[0, SEED_LIMIT)``: NetHack's RNG seeds are unsigned 64-bit (NLE raises a pybind
``TypeError`` outside that range), and Gymnasium rejects negative seeds too. Every env applies the same rule
(``check_seed``), so a seed that works for one game works for all."""


def check_seed(seed: object) -> int | None:
    """``seed`` as an int, or None for a random episode; the contract every ``TextEnv.reset`` applies.

    Raises:
        ValueError: ``seed`` is not an integer (bools are not seeds) or lies outside ``[0, 2**64)``.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise ValueError(f"seed must be an integer or None, not {seed!r}")
    value = operator.index(seed)  # type: ignore[arg-type]
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def resolve_seed(seed: object) -> int:
    """``check_seed(seed)``, with None drawn at random (from ``os.urandom``, below ``2**31 - 1``).

    Raises:
        ValueError: as ``check_seed``.
    """
    value = check_seed(seed)
    return int.from_bytes(os.urandom(4), "little") % (2**31 - 1) if value is None else value


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
        """Start an episode; the same seed gives the same observations, byte for byte.

        Raises:
            ValueError: ``seed`` breaks the seed contract (``check_seed``).
        """
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


def actions_now(env: object) -> list[ActionSpec]:
    """Actions an env accepts at this moment besides ``env.actions`` (its optional ``extra_actions``), by name.

    NetHack offers ``letter X`` while the game asks for an inventory item or a menu entry; the list changes from
    step to step, so it belongs in a step's prompt, never in the static action list. Most envs offer none.
    """
    extra = getattr(env, "extra_actions", None)
    return list(extra) if extra else []


def validate_action(actions: list[ActionSpec], action: str | int) -> int | None:
    """The index of ``action`` (a case-insensitive name, or an index as int or digit string), or None."""
    if isinstance(action, bool):
        return None
    if isinstance(action, int):
        return action if 0 <= action < len(actions) else None
    text = str(action).strip().lower()
    # ASCII only: str.isdigit() is also true for "²" (which int() rejects) and other scripts' digits.
    if text.isascii() and text.isdigit():
        index = int(text)
        return index if index < len(actions) else None
    for i, spec in enumerate(actions):
        if spec.name.lower() == text:
            return i
    return None
