"""What NetHack and MiniHack text envs share: seeding, the action vocabulary, --More-- handling, text, state keys.

Subclasses build the NLE environment (``_make_nle``), seed it (``_seed_nle``) and measure progression
(``_progression``). Steps count the agent's actions; ``--More--`` prompts that the env answers by itself (as
BALROG's ``skip_more`` does) are not counted.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from automem.envs.base import ActionSpec, InvalidActionError, check_seed, validate_action
from automem.envs.nethack_actions import action_set
from automem.envs.nethack_text import decode, render
from automem.envs.registry import remake

_MORE = b"--More--"
_MORE_KEY = 13  # Enter
_MAX_AUTO_MORE = 32  # a safety net: real message chains are a few screens long
_BL_TIME = 20  # nle.nethack.NLE_BL_TIME: left out of the state key, since waiting changes nothing else


class NLETextEnv:
    """Base of the NLE-backed text envs; see the module docstring."""

    env_id = "nethack-v0"
    family = "nethack"

    def __init__(self, max_steps: int, auto_more: bool = True, **kwargs: Any) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.max_steps = int(max_steps)
        self.auto_more = auto_more
        self._kwargs: dict[str, Any] = {"max_steps": self.max_steps, "auto_more": auto_more, **kwargs}
        self._env = self._make_nle(**kwargs)
        self._actions, self._indices = action_set(tuple(self._env.actions), self.family)
        self._more_index = next(
            (
                i
                for i, a in enumerate(self._env.actions)
                if int(a) == _MORE_KEY and type(a).__name__ == "MiscAction"
            ),
            None,
        )
        self._steps = 0
        self._done = True
        self._seed: int | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._message = ""

    # --- to be provided by subclasses -----------------------------------------------------------------------

    def _make_nle(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _seed_nle(self, seed: int) -> None:
        raise NotImplementedError

    def _reset_nle(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self._env.reset()

    def _progression(self, obs: dict[str, np.ndarray], end_status: Any) -> float:
        raise NotImplementedError

    def _extra_info(self, obs: dict[str, np.ndarray], end_status: Any) -> dict[str, Any]:
        return {}

    # --- the TextEnv protocol --------------------------------------------------------------------------------

    @property
    def actions(self) -> list[ActionSpec]:
        """The named actions this game offers, in index order."""
        return list(self._actions)

    def reset(self, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start a game from ``seed`` (random when None); the same seed gives the same game.

        Raises:
            ValueError: ``seed`` is not an int in ``[0, 2**64)`` (``check_seed``; NetHack's seeds are 64-bit).
        """
        seed = check_seed(seed)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little") % (2**31 - 1)
        self._seed = seed
        self._seed_nle(self._seed)
        obs, info = self._reset_nle()
        self._steps = 0
        self._done = False
        messages = [decode(obs["message"])]
        obs, _, _, _, info = self._skip_more(obs, 0.0, False, False, info, messages)
        return self._observe(obs, messages), self._info(obs, info.get("end_status"))

    def step(self, action: str | int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one action; ``--More--`` prompts that follow are answered automatically when ``auto_more``.

        Raises:
            InvalidActionError: ``action`` is not one of ``actions`` (by name or index).
            RuntimeError: the episode has ended (or never started); call ``reset``.
        """
        index = validate_action(self._actions, action)
        if index is None:
            raise InvalidActionError(
                f"invalid action {action!r}; give a name from the action list or an index below {len(self._actions)}"
            )
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        obs, reward, done, truncated, info = self._env.step(self._indices[index])
        messages = [decode(obs["message"])]
        obs, reward, done, truncated, info = self._skip_more(obs, reward, done, truncated, info, messages)
        self._steps += 1
        terminated = bool(done and not truncated)
        truncated = bool(truncated or (not done and self._steps >= self.max_steps))
        self._done = terminated or truncated
        return (
            self._observe(obs, messages),
            float(reward),
            terminated,
            truncated,
            self._info(obs, info["end_status"]),
        )

    def close(self) -> None:
        """Shut the game down."""
        self._env.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # NLE holds a C game; a pickled env comes back as a fresh env with the same settings.
        return (remake, (self.env_id, self._kwargs))

    # --- helpers ---------------------------------------------------------------------------------------------

    def _skip_more(
        self,
        obs: dict[str, np.ndarray],
        reward: float,
        done: bool,
        truncated: bool,
        info: dict[str, Any],
        messages: list[str],
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.auto_more or self._more_index is None:
            return obs, reward, done, truncated, info
        for _ in range(_MAX_AUTO_MORE):
            if done or _MORE not in obs["tty_chars"].tobytes():
                break
            obs, more_reward, done, truncated, info = self._env.step(self._more_index)
            reward += more_reward
            message = decode(obs["message"])
            if message and message != messages[-1]:
                messages.append(message)
        return obs, reward, done, truncated, info

    def _observe(self, obs: dict[str, np.ndarray], messages: list[str]) -> str:
        self._obs = obs
        self._message = " ".join(m for m in messages if m).replace(_MORE.decode(), "").strip()
        # Still waiting (auto_more off, or the safety net hit): say so, as the screen does.
        if _MORE in obs["tty_chars"][0].tobytes():
            self._message += " --More--"
        return render(
            self._message,
            obs["glyphs"],
            obs["blstats"],
            obs["inv_letters"],
            obs["inv_strs"],
            obs["tty_chars"],
        )

    def _info(self, obs: dict[str, np.ndarray], end_status: Any) -> dict[str, Any]:
        blstats = obs["blstats"]
        x, y = int(blstats[0]), int(blstats[1])
        digest = hashlib.blake2b(digest_size=8)
        digest.update(obs["glyphs"].tobytes())
        status = blstats.copy()
        status[_BL_TIME] = 0
        digest.update(status.tobytes())
        digest.update(obs["inv_letters"].tobytes())
        digest.update(obs["inv_strs"].tobytes())
        digest.update(self._message.encode("latin-1", "replace"))
        return {
            "progression": float(self._progression(obs, end_status)),
            "step": self._steps,
            "seed": self._seed,
            "end_status": getattr(end_status, "name", str(end_status)),
            "player_pos": [x, y],
            # Player position, then a hash of map glyphs, status but for the turn, inventory and message.
            "state_key": f"{x},{y}:{digest.hexdigest()}",
            **self._extra_info(obs, end_status),
        }
