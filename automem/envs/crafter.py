"""Crafter as a text game (``crafter-v0``, ``crafter-balrog-v0``), without rendering a single pixel.

``crafter-balrog-v0`` (``balrog=True``) is the game BALROG's agents play: its text lists every kind in view as
BALROG's Crafter wrapper does (``crafter_text``), and its world unfolds as under BALROG's wrapper, which renders
256x256 images, twice per step (once in ``crafter.Env.step``, once for its observation), and starts each episode
with a noop step it does not count. The renders matter at night, when each draws noise from the world's random
generator (below). ``crafter-v0`` is ``crafter.Env``'s own game with the terser text.

The dynamics are Crafter's own (``crafter.Env``); only the observation changes. Two details keep the game both
fast and exactly reproducible:

- Crafter's step renders a 64x64 image (about 75% of its step time here). The image is never built, but at night
  Crafter's renderer draws noise from the *world's* random generator, which also drives creatures and spawning;
  the text env draws the same numbers and throws them away, so its game unfolds exactly as ``crafter.Env``'s.
- Crafter keeps each chunk's creatures in a ``set`` of objects hashed by memory address and picks the one to
  despawn by position in that set, so two runs with the same seed and actions can diverge
  (danijar/crafter#31, danijar/crafter#36). ``make_deterministic`` gives the world insertion-ordered chunks.
"""

from __future__ import annotations

import collections
from typing import Any

from automem.envs.base import ActionSpec, InvalidActionError, resolve_seed, validate_action
from automem.envs.crafter_text import ACHIEVEMENTS, describe
from automem.envs.registry import remake

# BALROG's action names (lower-cased), in Crafter's action order.
ACTIONS: list[ActionSpec] = [
    ActionSpec("noop", "do nothing this step"),
    ActionSpec("move west", "step one cell west (left), or turn to face west if the cell is blocked"),
    ActionSpec("move east", "step one cell east (right), or turn to face east if the cell is blocked"),
    ActionSpec("move north", "step one cell north (up), or turn to face north if the cell is blocked"),
    ActionSpec("move south", "step one cell south (down), or turn to face south if the cell is blocked"),
    ActionSpec(
        "do",
        "act on the cell you face: collect wood, stone, coal, iron, diamond or (sometimes, from grass) a sapling,"
        " drink water, hit a creature, eat a ripe plant; stone and coal need a wood pickaxe, iron needs a stone"
        " pickaxe, diamond needs an iron pickaxe",
    ),
    ActionSpec("sleep", "sleep to restore energy; you wake up when energy is full"),
    ActionSpec("place stone", "put 1 stone on the cell you face (grass, sand, path, water or lava)"),
    ActionSpec("place table", "build a table on the cell you face (grass, sand or path) from 2 wood"),
    ActionSpec("place furnace", "build a furnace on the cell you face (grass, sand or path) from 4 stone"),
    ActionSpec("place plant", "plant a sapling on the grass cell you face"),
    ActionSpec("make wood pickaxe", "craft a wood pickaxe from 1 wood; needs a table nearby"),
    ActionSpec("make stone pickaxe", "craft a stone pickaxe from 1 wood and 1 stone; needs a table nearby"),
    ActionSpec(
        "make iron pickaxe",
        "craft an iron pickaxe from 1 wood, 1 coal, 1 iron; needs a table and a furnace nearby",
    ),
    ActionSpec("make wood sword", "craft a wood sword from 1 wood; needs a table nearby"),
    ActionSpec("make stone sword", "craft a stone sword from 1 wood and 1 stone; needs a table nearby"),
    ActionSpec(
        "make iron sword",
        "craft an iron sword from 1 wood, 1 coal, 1 iron; needs a table and a furnace nearby",
    ),
]


class _OrderedSet:
    """The part of ``set`` Crafter's chunks use, iterating in insertion order (so runs are reproducible)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[Any, None] = {}

    def add(self, item: Any) -> None:
        self._items[item] = None

    def remove(self, item: Any) -> None:
        del self._items[item]

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: Any) -> bool:
        return item in self._items


def make_deterministic(env: Any) -> None:
    """Make a ``crafter.Env`` reproducible by giving its world insertion-ordered chunk sets.

    Call before ``reset``; it survives later resets. Used by the text env and, in tests, on the reference
    ``crafter.Env`` it is compared with.
    """
    world = env._world
    original_reset = world.reset

    def reset(seed: int | None = None) -> None:
        original_reset(seed=seed)
        world._chunks = collections.defaultdict(_OrderedSet)

    world.reset = reset
    world._chunks = collections.defaultdict(_OrderedSet)


def _manhattan_from(player: Any) -> Any:
    """A drop-in for ``player.distance``: the same integer, without numpy's per-call overhead.

    Crafter measures the player's distance to every object on every step (to decide which objects to update);
    with numpy on two-element arrays that is most of a step's time once the rendering is gone.
    """

    def distance(target: Any) -> int:
        t = target.pos if hasattr(target, "pos") else target
        p = player.pos
        return abs(int(t[0]) - int(p[0])) + abs(int(t[1]) - int(p[1]))

    return distance


def _crafter_env_class() -> type:
    """``crafter.Env`` without pixels, built on first use so that importing this module is cheap."""
    import crafter

    class _TextCrafter(crafter.Env):  # type: ignore[misc, name-defined]
        def __init__(self, renders_per_step: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._renders_per_step = renders_per_step
            make_deterministic(self)
            # The text is built from the world itself; the full-map semantic array is not needed.
            self._sem_view = lambda: None
            self.text_grid = tuple(int(v) for v in self._local_view._grid)  # the cells the player sees
            unit = self._size // self._view
            self._noise_shape = tuple(int(v) for v in self._local_view._grid * unit)

        def reset(self) -> None:
            super().reset()
            self._player.distance = _manhattan_from(self._player)

        def _obs(self) -> None:
            # Crafter's renderer draws this noise from the world's generator at night (LocalView._light);
            # drawing it here keeps the game identical to crafter.Env's without building the image.
            if self._world.daylight < 0.5:
                for _ in range(self._renders_per_step):
                    self._world.random.uniform(32, 127, self._noise_shape)
            return None

    return _TextCrafter


class CrafterTextEnv:
    """Crafter played through text: BALROG-style observations, 17 named actions, progression = achievements / 22.

    Args:
        max_steps: Steps after which the episode is truncated (10,000 for ``crafter-v0``, 2,000 for
            ``crafter-balrog-v0``).
        area: World size in cells.
        view: Crafter's view grid; the player sees ``view[0]`` x ``view[1] - 2`` cells around them.
        balrog: BALROG's game and listing (``crafter-balrog-v0``): every kind in view is listed, grass, sand and
            path included, and the world unfolds as under BALROG's wrapper (see the module's docstring);
            ``False`` (``crafter-v0``): ``crafter.Env``'s own game, and grass, sand and path are not listed.
    """

    env_id = "crafter-v0"

    def __init__(
        self,
        max_steps: int = 10_000,
        area: tuple[int, int] = (64, 64),
        view: tuple[int, int] = (9, 9),
        balrog: bool = False,
    ):
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.max_steps = int(max_steps)
        self.balrog = bool(balrog)
        self._kwargs = {
            "max_steps": self.max_steps,
            "area": tuple(area),
            "view": tuple(view),
            "balrog": self.balrog,
        }
        # BALROG's config renders 256x256 images, twice per step; the noise drawn at night depends on both.
        render = {"size": (256, 256), "renders_per_step": 2} if self.balrog else {}
        self._env = _crafter_env_class()(
            area=tuple(area), view=tuple(view), length=None, reward=True, **render
        )
        self._steps = 0
        self._done = True
        self._seed: int | None = None

    @property
    def actions(self) -> list[ActionSpec]:
        """The 17 actions, in Crafter's order."""
        return list(ACTIONS)

    def reset(self, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on the world generated from ``seed`` (random when None).

        The world is the one ``crafter.Env(seed=seed).reset()`` generates first, whatever happened before (with
        ``balrog``, one noop step later, as BALROG's reset leaves it).

        Raises:
            ValueError: ``seed`` is not an int in ``[0, 2**64)`` (``check_seed``, the same rule as every env's,
                although Crafter itself would take any int).
        """
        self._seed = resolve_seed(seed)
        env = self._env
        env._seed = self._seed
        env._episode = 0  # crafter seeds each world from (seed, episode number)
        env.reset()
        if self.balrog:
            env.step(0)  # BALROG's reset takes a noop step (not counted) to build its first observation
        self._steps = 0
        self._done = False
        return self._render(), self._info()

    def step(self, action: str | int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one action.

        Raises:
            InvalidActionError: ``action`` is not an action name or index.
            RuntimeError: the episode has ended (or never started); call ``reset``.
        """
        index = validate_action(ACTIONS, action)
        if index is None:
            raise InvalidActionError(
                f"invalid action {action!r}; valid: {', '.join(a.name for a in ACTIONS)}"
            )
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        _, reward, _, _ = self._env.step(index)
        self._steps += 1
        terminated = self._env._player.health <= 0
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._render(), float(reward), terminated, truncated, self._info()

    def close(self) -> None:
        """Nothing to release (Crafter is pure Python)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickled env comes back as a fresh env with the same settings (the game state is not carried).
        return (remake, (self.env_id, self._kwargs))

    def _render(self) -> str:
        env = self._env
        return describe(
            env._world,
            env._player,
            env.text_grid,
            self._steps,
            self.max_steps,
            env._world.daylight,
            self.balrog,
        )

    def _info(self) -> dict[str, Any]:
        player = self._env._player
        unlocked = sorted(name for name, count in player.achievements.items() if count > 0)
        x, y = (int(v) for v in player.pos)
        fx, fy = (int(v) for v in player.facing)
        inventory = {k: int(v) for k, v in player.inventory.items()}
        mask = sum(1 << i for i, name in enumerate(ACHIEVEMENTS) if player.achievements.get(name, 0) > 0)
        # Everything an action can change that matters; the diagnostics compare it across steps.
        state_key = (
            f"pos={x},{y};face={fx},{fy};inv={''.join(str(v) for v in inventory.values())};ach={mask:06x}"
        )
        return {
            "progression": len(unlocked) / len(ACHIEVEMENTS),
            "step": self._steps,
            "seed": self._seed,
            "achievements": unlocked,
            "inventory": inventory,
            "player_pos": [x, y],
            "facing": [fx, fy],
            "state_key": state_key,
        }
