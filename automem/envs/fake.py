"""A tiny deterministic text environment for tests: walk along a corridor to the goal."""

from __future__ import annotations

from typing import Any

from automem.envs.base import ActionSpec, InvalidActionError, check_seed, validate_action


class CorridorEnv:
    """A corridor of ``length`` cells; the player starts at 0 and wins at ``length - 1``.

    Moving into a wall changes nothing (an unproductive action). Progression is position / (length - 1).
    """

    env_id = "corridor-v0"

    def __init__(self, length: int = 5, max_steps: int = 20) -> None:
        self.length = length
        self.max_steps = max_steps
        self._pos = 0
        self._steps = 0
        self._seed: int | None = None

    @property
    def actions(self) -> list[ActionSpec]:
        return [
            ActionSpec("left", "move one cell left"),
            ActionSpec("right", "move one cell right"),
            ActionSpec("wait", "do nothing"),
        ]

    def _obs(self, message: str) -> str:
        # Show at most 5 cells either side, so very long corridors (benchmarks) stay cheap to render.
        lo, hi = max(0, self._pos - 5), min(self.length, self._pos + 6)
        cells = "".join("@" if i == self._pos else "." for i in range(lo, hi))
        left = "[" if lo == 0 else "<"
        right = "]" if hi == self.length else ">"
        return f"{message}\nCorridor: {left}{cells}{right} goal at the right end. Position {self._pos}."

    def _info(self) -> dict[str, Any]:
        return {"progression": self._pos / (self.length - 1), "step": self._steps, "position": self._pos}

    def reset(self, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        seed = check_seed(seed)  # the same seed contract as the real games
        self._seed = seed
        self._pos = 0 if seed is None else seed % 2
        self._steps = 0
        return self._obs("You wake up in a corridor."), self._info()

    def step(self, action: str | int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        index = validate_action(self.actions, action)
        if index is None:
            raise InvalidActionError(f"invalid action {action!r}")
        name = self.actions[index].name
        before = self._pos
        if name == "left":
            self._pos = max(0, self._pos - 1)
        elif name == "right":
            self._pos = min(self.length - 1, self._pos + 1)
        self._steps += 1
        moved = "You moved." if self._pos != before else "Nothing happens."
        terminated = self._pos == self.length - 1
        truncated = not terminated and self._steps >= self.max_steps
        reward = 1.0 if terminated else 0.0
        return self._obs(moved), reward, terminated, truncated, self._info()

    def close(self) -> None:
        pass
