"""Environments by versioned id, registered lazily as ``"module:Class"`` so that listing them imports no game.

Gymnasium's registry is the model: an id maps to an entry point and default keyword arguments; ``make_env``
imports the module only when the environment is made, so ``automem env list`` and the CLI stay fast and a missing
game package breaks only that game.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from automem.envs.base import TextEnv

BALROG_EQUIVALENT = frozenset({"crafter-balrog-v0", "nethack-balrog-v0"})
"""Ids whose settings are BALROG's own, so that their numbers compare with BALROG's (``EnvSpec.balrog_equivalent``).
The MiniHack ids keep BALROG's settings but for menus (``answer_menus=True``; ``False`` is BALROG's)."""

TEST_TAG = "[test]"
"""How the description of a test-only environment starts (``EnvSpec.is_test``)."""


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment.

    Attributes:
        id: Versioned id, ``family-name-vN``.
        entry_point: ``"package.module:Class"``; the class is called with the merged kwargs, and the instance's
            ``env_id`` is then set to ``id`` (one class can serve several ids).
        description: One line for ``automem env list``.
        kwargs: Defaults passed to the class; ``make_env`` kwargs override them.
    """

    id: str
    entry_point: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_test(self) -> bool:
        """A fake for tests and benchmarks, not a game to evaluate on (its description starts with ``[test]``)."""
        return self.description.startswith(TEST_TAG)

    @property
    def balrog_equivalent(self) -> bool:
        """Made with BALROG's settings: its numbers compare with BALROG's (``BALROG_EQUIVALENT``)."""
        return self.id in BALROG_EQUIVALENT


class UnknownEnvError(KeyError):
    """No environment is registered under the requested id."""

    def __init__(self, env_id: str, known: list[str]) -> None:
        self.env_id = env_id
        self.known = known
        super().__init__(env_id)

    def __str__(self) -> str:
        return f"unknown environment id {self.env_id!r}; known ids: {', '.join(self.known)}"


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_id: str, entry_point: str, description: str, **kwargs: Any) -> None:
    """Register an environment under ``env_id``.

    Raises:
        ValueError: ``env_id`` is already registered or ``entry_point`` is not ``"module:Class"``.
    """
    if env_id in _REGISTRY:
        raise ValueError(f"environment {env_id!r} is already registered")
    if entry_point.count(":") != 1:
        raise ValueError(f"entry point {entry_point!r} is not 'module:Class'")
    _REGISTRY[env_id] = EnvSpec(env_id, entry_point, description, dict(kwargs))


def spec(env_id: str) -> EnvSpec:
    """The registered spec of ``env_id``.

    Raises:
        UnknownEnvError: nothing is registered under ``env_id``.
    """
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise UnknownEnvError(env_id, sorted(_REGISTRY)) from None


def list_envs() -> list[EnvSpec]:
    """Every registered environment, sorted by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def make_env(env_id: str, **kwargs: Any) -> TextEnv:
    """Build the environment registered as ``env_id``; ``kwargs`` override the registered defaults.

    Raises:
        UnknownEnvError: nothing is registered under ``env_id``.
    """
    s = spec(env_id)
    module_name, class_name = s.entry_point.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    env = cls(**{**s.kwargs, **kwargs})
    env.env_id = env_id
    return env


def remake(env_id: str, kwargs: dict[str, Any]) -> TextEnv:
    """``make_env(env_id, **kwargs)``: what a pickled environment unpickles to (a fresh env, same settings)."""
    return make_env(env_id, **kwargs)


# --- The registered environments ------------------------------------------------------------------------------

# A test fake, registered because tests (their hand-built stores too) and benchmarks make it by id; its description
# starts with TEST_TAG so that listings mark it as no game to evaluate on.
register(
    "corridor-v0",
    "automem.envs.fake:CorridorEnv",
    f"{TEST_TAG} a five-cell corridor for tests and benchmarks (no game package needed)",
)
register(
    "crafter-v0",
    "automem.envs.crafter:CrafterTextEnv",
    "Crafter survival game as text, 22 achievements, 10,000-step cap",
    max_steps=10_000,
)
register(
    "crafter-balrog-v0",
    "automem.envs.crafter:CrafterTextEnv",
    "Crafter as BALROG's agents play it: its 2,000-step cap, its text (every material listed), its world",
    max_steps=2_000,
    balrog=True,
)

# MiniHack: the eight tasks BALROG evaluates, each with BALROG's settings (100-step cap, no autopickup).
_MINIHACK_TASKS = {
    "minihack-boxoban-hard-v0": (
        "MiniHack-Boxoban-Hard-v0",
        "push four boulders onto fountains (hard levels)",
    ),
    "minihack-boxoban-medium-v0": (
        "MiniHack-Boxoban-Medium-v0",
        "push four boulders onto fountains (medium)",
    ),
    "minihack-mazewalk-9x9-v0": ("MiniHack-MazeWalk-9x9-v0", "find the stairs down in a 9x9 maze"),
    "minihack-mazewalk-15x15-v0": ("MiniHack-MazeWalk-15x15-v0", "find the stairs down in a 15x15 maze"),
    "minihack-corridor-r3-v0": (
        "MiniHack-Corridor-R3-v0",
        "reach the stairs through corridors of three rooms",
    ),
    "minihack-corridorbattle-dark-v0": (
        "MiniHack-CorridorBattle-Dark-v0",
        "fight through monsters in a dark corridor to the stairs",
    ),
    "minihack-quest-easy-v0": (
        "MiniHack-Quest-Easy-v0",
        "cross lava with an item, fight, reach the stairs (easy)",
    ),
    "minihack-quest-medium-v0": (
        "MiniHack-Quest-Medium-v0",
        "a longer quest past lava and monsters (medium)",
    ),
}
for _id, (_task, _desc) in _MINIHACK_TASKS.items():
    register(_id, "automem.envs.minihack:MiniHackTextEnv", f"MiniHack: {_desc}", task=_task)

register(
    "nethack-v0",
    "automem.envs.nethack:NetHackTextEnv",
    "full NetHack (NetHackChallenge-v0) as text; progression by BALROG's depth/level table",
)
register(
    "nethack-balrog-v0",
    "automem.envs.nethack:NetHackTextEnv",
    "NetHack with BALROG's 100,000-step cap and 150-step no-progress timeout (comparable with BALROG's numbers)",
    max_steps=100_000,
    no_progress_timeout=150,
)
