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
from automem.envs.nethack_text import LETTERS, decode, glyph_table, menu_letters, menu_page, render, where
from automem.envs.registry import remake

_MORE = b"--More--"
_MORE_KEY = 13  # Enter
_ESC_KEY = 27
_MAX_AUTO_MORE = 32  # a safety net: real message chains are a few screens long
_BL_TIME = 20  # nle.nethack.NLE_BL_TIME: left out of the state key, since waiting changes nothing else
_CHOICES = re.compile(r"\[([^\]]*)\](?: \(.\))?\s*$")  # "[fg or ?*]", "[yn] (n)" at the end of a question
_LETTER_ACTION = re.compile(r"^\s*letter\s+(\S)\s*$", re.IGNORECASE)
_GETPOS = "(For instructions type a"  # how NetHack's getpos asks for a position (travel, jump, glance...)
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
    """Base of the NLE-backed text envs; see the module docstring.

    With ``describe_prompts`` (NetHack), an open menu, question or position selection is described after the
    message (``_prompt``): its title, entries, page marker and the actions that answer it; and while the game asks
    for an inventory item or a menu entry, ``extra_actions`` offers ``letter X`` for each letter it may take
    (``step`` accepts ``letter X`` for any letter the game's keys type; the static action list stays as it is).
    """

    env_id = "nethack-v0"
    family = "nethack"
    describe_prompts = False

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
        # ``letter X``: the game's own action for key X (NetHackChallenge has one for every letter).
        self._letter_index: dict[str, int] = {}
        if self.describe_prompts:
            for i, a in enumerate(self._env.actions):
                if chr(int(a)) in LETTERS:
                    self._letter_index.setdefault(chr(int(a)), i)
            self._typeable |= set(self._letter_index)
        self._extra: list[ActionSpec] = []
        self._prompt_lines: list[str] = []
        self._selecting: tuple[str, int, int, int] | None = (
            None  # getpos: (question, x, y, turn) at its start
        )
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

    @property
    def extra_actions(self) -> list[ActionSpec]:
        """Actions besides ``actions`` that answer what the game asks now: ``letter X`` while it asks for an
        inventory item or a menu entry (``automem.envs.base.actions_now``); empty otherwise."""
        return list(self._extra)

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
        self._selecting = None
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
        raw_index = None if index is None else self._indices[index]
        letter = _LETTER_ACTION.match(action) if isinstance(action, str) and index is None else None
        if letter and letter.group(1) in self._letter_index:
            raw_index = self._letter_index[letter.group(1)]
        if raw_index is None:
            raise InvalidActionError(
                f"invalid action {action!r}; give a name from the action list or an index below {len(self._actions)}"
            )
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        self._end_obs, self._raw_messages = None, []
        obs, reward, done, truncated, info = self._env.step(raw_index)
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
                # Every raw step's message buffer, which keeps its last message until a new one comes: a
                # message repeated from one raw step to the next is said once.
                messages = []
                for m in (decode(m) for m in self._raw_messages):
                    if not messages or messages[-1] != m:
                        messages.append(m)
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
            # NLE's message buffer keeps the last message until the game writes another, so an unchanged buffer
            # is news only if the top line shows it again: the game wrote the same message twice ("The kitten
            # picks up a gold piece." after the same at the --More-- before). Both are kept, in order.
            if message and (
                message != messages[-1] or message in bytes(obs["tty_chars"][0]).decode("latin-1")
            ):
                messages.append(message)
        return obs, reward, done, truncated, info

    def _observe(self, obs: dict[str, np.ndarray], messages: list[str], ending: str = "") -> str:
        self._obs = obs
        kept = [m for m in messages if m]  # repeats were sorted out where they were read (_skip_more, step)
        self._message = " ".join(kept).replace(_MORE.decode(), "").strip()
        # Still waiting (auto_more off, or the safety net hit): say so, as the screen does.
        if not ending and _MORE in obs["tty_chars"][0].tobytes():
            self._message += " --More--"
        prompt: list[str] = []
        map_rows = None
        self._extra = []
        if self.describe_prompts and not ending:
            prompt, self._extra, in_menu = self._prompt(obs)
            if in_menu and "chars" in obs:  # the menu is drawn over the map; show the map without it
                map_rows = [bytes(r).decode("latin-1") for r in obs["chars"]]
        self._prompt_lines = prompt
        text = render(
            self._message,
            obs["glyphs"],
            obs["blstats"],
            obs["inv_letters"],
            obs["inv_strs"],
            obs["tty_chars"],
            prompt=prompt,
            map_rows=map_rows,
            max_chars=self._max_chars(),
        )
        if ending:
            first, _, rest = text.partition("\n")
            text = f"{first}\nEpisode ended: {ending}.\n{rest}"
        return text

    def _max_chars(self) -> int | None:
        """The observation budget in characters (``render``'s ``max_chars``); None: no limit."""
        return None

    def _letter_spec(self, letter: str, what: str) -> ActionSpec | None:
        if letter not in self._letter_index:
            return None
        code = f"[key {letter}]"
        return ActionSpec(f"letter {letter}", f"{what} {code}" if what else f"type {letter} {code}")

    def _prompt(self, obs: dict[str, np.ndarray]) -> tuple[list[str], list[ActionSpec], bool]:
        """What the game waits on, in lines after the message; the ``letter X`` actions that answer it; and
        whether a menu is drawn over the map."""
        internal = self._env.last_observation[self._env._internal_index]
        tty = obs["tty_chars"]
        inventory = {
            chr(c): decode(s) for c, s in zip(obs["inv_letters"].tolist(), obs["inv_strs"], strict=False) if c
        }
        blstats = obs["blstats"]
        x, y, turn = int(blstats[0]), int(blstats[1]), int(blstats[_BL_TIME])
        if internal[3] and _MORE not in tty.tobytes():  # xwaitforspace without --More--: a menu page
            self._selecting = None
            rows, marker = menu_page(tty)
            letters = menu_letters(rows)
            lines = [f"Menu open{f', page {marker}' if marker else ''}:"] + [f"  {r}" for r in rows]
            extra = []
            for c in letters:
                entry = next((r.strip()[4:] for r in rows if r.strip().startswith(f"{c} ")), "")
                spec = self._letter_spec(c, f"select or unselect menu entry {c}: {entry}"[:100])
                if spec:
                    extra.append(spec)
            pages = "space shows the next page (on the last page it confirms)"
            if letters:
                lines.append(
                    "Menu keys: "
                    + ", ".join(s.name for s in extra)
                    + " select entries; pickup (,) selects this page; more (Enter) confirms; "
                    + f"{pages}; esc cancels."
                )
            else:
                lines.append(f"Menu keys: nothing to select; {pages}; esc closes it.")
            return lines, extra, True
        if internal[1]:  # yn_function: a one-key question
            self._selecting = None
            message = decode(obs["message"])
            choices = question_choices(message)
            if choices is None:
                if "direction" in message:
                    return (
                        [
                            "Question: answer with a direction action (north ... northwest); up (<) or down (>) "
                            "for up or down; wait (.) for yourself; esc cancels."
                        ],
                        [],
                        False,
                    )
                return ["Question: answer with one key; esc cancels."], [], False
            spec_part = _CHOICES.search(message)
            offered = sorted(choices, key=lambda c: (LETTERS.find(c) if c in LETTERS else 99, c))
            anything = spec_part is not None and "*" in spec_part.group(1)
            extra, words = [], []
            for c in offered:
                item = inventory.get(c, "")
                spec = self._letter_spec(c, f"answer with {c}" + (f": {item}" if item else ""))
                if spec:
                    extra.append(spec)
                    words.append(f"{spec.name}" + (f" ({item})" if item else ""))
                elif c == "-":
                    words.append("minus (-: none, or your bare hands)")
                else:
                    words.append(f"the action that types {c}")
            if anything:  # "or ?*": any item may be named, the game judges it
                others = [c for c in inventory if c not in choices]
                for c in others:
                    spec = self._letter_spec(c, f"answer with {c} (not suggested): {inventory[c]}")
                    if spec:
                        extra.append(spec)
                if others:
                    words.append("or any other item you carry (letter " + ", ".join(others) + ")")
            return [f"Question: answer with {', '.join(words)}; esc cancels."], extra, False
        if internal[2]:  # getlin: NLE's NetHackChallenge leaves text input to the agent
            self._selecting = None
            return (
                ["Text input: the game reads a line of text; more (Enter) ends it, esc cancels."],
                [],
                False,
            )
        return self._position_lines(obs, x, y, turn), [], False

    def _position_lines(self, obs: dict[str, np.ndarray], x: int, y: int, turn: int) -> list[str]:
        """While NetHack's getpos selects a position (after ``travel``): where the cursor is and what is under it."""
        row0 = bytes(obs["tty_chars"][0]).decode("latin-1").strip()
        if _GETPOS in row0:
            self._selecting = (row0.split(_GETPOS)[0].strip(), x, y, turn)
        elif self._selecting is not None:
            _, x0, y0, t0 = self._selecting
            # Picked (the player moved or time passed) or cancelled (the top line is cleared).
            if (x, y, turn) != (x0, y0, t0) or not row0:
                self._selecting = None
        if self._selecting is None or "tty_cursor" not in obs:
            return []
        row, col = (int(v) for v in obs["tty_cursor"])
        cx, cy = col, row - 1
        names, _ = glyph_table()
        glyphs = obs["glyphs"]
        said = "" if _GETPOS in row0 or not row0 else f"; the game says: {row0}"
        if (cx, cy) == (x, y):
            cursor = f"the cursor is on you (x={cx}, y={cy})"
        else:
            inside = 0 <= cy < glyphs.shape[0] and 0 <= cx < glyphs.shape[1]
            under = names[int(glyphs[cy, cx])] if inside else "outside the map"
            cursor = f"the cursor is at x={cx}, y={cy}, {where(cx - x, cy - y)} of you, on: {under}"
        return [
            f"Selecting a position ({self._selecting[0]}): {cursor}{said}.",
            "Position keys: direction actions move the cursor (far ... moves it 8 squares); up (<) and down (>) "
            "jump to stairs; wait (.) or pickup (,) picks the position; esc cancels.",
        ]

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
        digest.update("\n".join(self._prompt_lines).encode("latin-1", "replace"))
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
