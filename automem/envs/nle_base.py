"""What NetHack and MiniHack text envs share: seeding, the action vocabulary, --More-- handling, text, state keys.

Subclasses build the NLE environment (``_make_nle``), seed it (``_seed_nle``) and measure progression
(``_progression``). Steps count the agent's actions; what the env answers by itself is not counted:

- ``--More--`` prompts, as BALROG's ``skip_more`` does;
- questions none of whose answers any action can type (MiniHack's action set has 32 of NLE's keys, so
  ``What do you want to zap? [f or ?*]`` cannot be answered there); the env cancels them with Esc (NetHack's
  answer to "never mind") and says so in the message. BALROG leaves such a question open: its agent gets out
  only by typing Enter (``more``), which NetHack also takes as "never mind", after steps spent on answers the
  game refuses ("You don't have that object.").

The last observation of an episode that the game ended is the last in-game state, not the screen NLE leaves
behind: NLE quits a game its task ended (MiniHack's success, the no-progress timeout) and clicks through the
death screens, so its final arrays hold zeros and the tombstone. The env keeps a copy of the state in which the
game ended and renders that, with the messages on the way and a line saying how the episode ended.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from automem.envs.base import ActionSpec, InvalidActionError, resolve_seed, validate_action
from automem.envs.nethack_actions import action_set
from automem.envs.nethack_text import decode, render
from automem.envs.registry import remake

_MORE = b"--More--"
_MORE_KEY = 13  # Enter
_ESC_KEY = 27
_MAX_AUTO_MORE = 32  # a safety net: real message chains are a few screens long
_BL_TIME = 20  # nle.nethack.NLE_BL_TIME: left out of the state key, since waiting changes nothing else
_CHOICES = re.compile(r"\[([^\]]*)\](?: \(.\))?\s*$")  # "[fg or ?*]", "[yn] (n)" at the end of a question
_END_WORDS = {
    "TASK_SUCCESSFUL": "the task is done (success)",
    "DEATH": "you died",
    "ABORTED": "the game stopped it: no progress for too long",
}


def question_choices(message: str) -> set[str] | None:
    """The answers a NetHack question offers (``"[a-c f or ?*]"`` gives a, b, c, f), or None for no question.

    ``?`` and ``*`` (list the candidates in a menu) are left out: the menu would ask for the same letters.
    """
    found = _CHOICES.search(message)
    if not found:
        return None
    spec = found.group(1).split(" or ", 1)[0]
    choices: set[str] = set()
    i = 0
    while i < len(spec):
        c = spec[i]
        if i + 2 < len(spec) and spec[i + 1] == "-" and spec[i].isalnum() and spec[i + 2].isalnum():
            choices.update(chr(o) for o in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
            continue
        if not c.isspace() and c not in "?*":
            choices.add(c)
        i += 1
    return choices


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
        # Esc cancels a question; the game's action set has it even where the agent's does not (MiniHack).
        self._esc_index = next((i for i, a in enumerate(self._env.actions) if int(a) == _ESC_KEY), None)
        self._typeable = {
            chr(int(self._env.actions[i])) for i in self._indices if int(self._env.actions[i]) < 128
        }
        self._steps = 0
        self._done = True
        self._seed: int | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._message = ""
        self._end_obs: dict[str, np.ndarray] | None = None  # the state the game ended in, during this step
        self._raw_messages: list[bytes] = []  # every message the game showed during this step, up to its end
        self._install_end_hooks()

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
        self._seed = resolve_seed(seed)
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
        self._end_obs, self._raw_messages = None, []
        obs, reward, done, truncated, info = self._env.step(self._indices[index])
        messages = [decode(obs["message"])]
        obs, reward, done, truncated, info = self._skip_more(obs, reward, done, truncated, info, messages)
        self._steps += 1
        capped = not done and self._steps >= self.max_steps
        terminated = bool(done and not truncated)
        truncated = bool(truncated or capped)
        self._done = terminated or truncated
        end_status = info["end_status"]
        ending = ""
        if done:
            # NLE has quit the game or clicked through its death screens: what it returns is the screen after
            # the game. Show the state the game ended in, with the messages that led there.
            if self._end_obs is not None:
                obs = self._end_obs
                messages = [decode(m) for m in self._raw_messages]
            status = getattr(end_status, "name", str(end_status))
            ending = _END_WORDS.get(status, f"the game ended ({status.lower()})")
        elif capped:
            ending = (
                f"the step cap of {self.max_steps} action{'s' if self.max_steps != 1 else ''} was reached"
            )
        text = self._observe(obs, messages, ending)
        return text, float(reward), terminated, truncated, self._info(obs, end_status)

    def close(self) -> None:
        """Shut the game down."""
        self._env.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # NLE holds a C game; a pickled env comes back as a fresh env with the same settings.
        return (remake, (self.env_id, self._kwargs))

    # --- helpers ---------------------------------------------------------------------------------------------

    def _install_end_hooks(self) -> None:
        """Keep the state a game ends in, which NLE overwrites before its ``step`` returns (module docstring).

        Two places see it: ``NLE._quit_game``, which quits a game the task has ended, gets the last in-game
        arrays; and the game's own ``step`` shows the first screen of a game that is over ("You die...") while
        the map and status are still drawn. Both are NLE internals (nle 1.3.0); the hooks only read.
        """
        env = self._env
        quit_game = env._quit_game
        nethack = env.nethack
        raw_step = nethack.step
        state_index = env._program_state_index  # program_state[0] is NetHack's gameover flag
        message_index = env._message_index

        def copy(observation: Any) -> dict[str, np.ndarray]:
            return {k: np.array(v, copy=True) for k, v in env._get_observation(observation).items()}

        def quit_hook(observation: Any, done: bool) -> Any:
            if self._end_obs is None:
                self._end_obs = copy(observation)
            return quit_game(observation, done)

        def step_hook(action: int) -> Any:
            observation, done = raw_step(action)
            if self._end_obs is None:  # cheap on every step: raw bytes now, decoded only if the game ends
                self._raw_messages.append(observation[message_index].tobytes())
                if observation[state_index][0]:
                    self._end_obs = copy(observation)
            return observation, done

        env._quit_game = quit_hook
        nethack.step = step_hook

    def remove_hooks(self) -> None:
        """Undo every patch this env made to its NLE env (``_install_end_hooks``, and a subclass's own).

        What is left steps as NLE does by itself (``benchmarks/envs.py`` times it so); this text env must not be
        stepped afterwards.
        """
        del self._env.nethack.step, self._env._quit_game

    def _unanswerable(self, obs: dict[str, np.ndarray]) -> bool:
        """Whether the game waits on a one-key question none of whose answers an action types."""
        # NLE's raw "internal" array (always kept, whatever the observation keys): [1] is in_yn_function.
        if not self._env.last_observation[self._env._internal_index][1]:
            return False
        choices = question_choices(decode(obs["message"]))
        return choices is not None and not choices & self._typeable

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
            if done:
                break
            if _MORE in obs["tty_chars"].tobytes():
                key = self._more_index
            elif self._unanswerable(obs):
                # Without Esc, Enter: NetHack also reads it as "never mind".
                key = self._more_index if self._esc_index is None else self._esc_index
                messages[-1] = (
                    messages[-1] or decode(obs["message"])
                ) + " (no action types any of these answers, so the question was cancelled)"
            else:
                break
            obs, more_reward, done, truncated, info = self._env.step(key)
            reward += more_reward
            message = decode(obs["message"])
            if message and message != messages[-1]:
                messages.append(message)
        return obs, reward, done, truncated, info

    def _observe(self, obs: dict[str, np.ndarray], messages: list[str], ending: str = "") -> str:
        self._obs = obs
        kept: list[str] = []
        for m in messages:  # the game repeats a message across raw steps; say it once
            if m and (not kept or kept[-1] != m):
                kept.append(m)
        self._message = " ".join(kept).replace(_MORE.decode(), "").strip()
        # Still waiting (auto_more off, or the safety net hit): say so, as the screen does.
        if not ending and _MORE in obs["tty_chars"][0].tobytes():
            self._message += " --More--"
        text = render(
            self._message,
            obs["glyphs"],
            obs["blstats"],
            obs["inv_letters"],
            obs["inv_strs"],
            obs["tty_chars"],
        )
        if ending:
            first, _, rest = text.partition("\n")
            text = f"{first}\nEpisode ended: {ending}.\n{rest}"
        return text

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
