"""MiniHack as text games: the eight tasks BALROG evaluates, with BALROG's settings.

Settings as BALROG makes its MiniHack envs (``balrog/environments/minihack/minihack_env.py``: ``gym.make(task,
observation_keys=..., **config.envs.minihack_kwargs)`` with ``balrog/config/config.yaml``'s ``minihack_kwargs``, then
its ``AutoMore`` wrapper): a random character (``character: "@"``, drawn from the seeded game; the Quest-Medium and
CorridorBattle classes force a knight), a 100-step cap, autopickup off, ``--More--`` skipped, MiniHack's task reward and BALROG's step
penalty (-0.01 for an action on which the game clock stands still). What BALROG leaves at its defaults stays at
MiniHack's (``minihack/base.py``: ``allow_all_yn_questions=True``, no pet, no spawned monsters) and NLE's
(``allow_all_modes=False``). BALROG installs ``balrog-nle`` 0.9.0 (its NLE fork; its ``nle/env/base.py`` steps the
same way as nle 1.3.0's) and its MiniHack fork (``balrog-ai/minihack``: MiniHack 0.1.6 on gym 0.23). Success is the
episode's end status (``TASK_SUCCESSFUL``), never ``reward > 0``: MiniHack's shaped rewards (Boxoban's per-boulder
bonus) are positive without a success. Progression is 1.0 on success and 0.0 otherwise, as in BALROG (whose
``BaseProgress`` in ``balrog/environments/nle/progress.py`` reads it as the last reward being at least 1.0).

Deviations from BALROG, each for a reason:

- Menus are left to the agent (``answer_menus``, on by default). With ``allow_all_modes=False``, NLE's
  ``_perform_known_steps`` (``nle/env/base.py``, identical in balrog-nle 0.9.0 and nle 1.3.0) types Space at every
  page that waits for a key, and a menu page is one (tty's ``process_menu_window`` waits in ``xwaitforspace``):
  every menu closes with nothing chosen. ``pickup`` on a square with two objects opens "Pick up what?", so in BALROG
  it picks up nothing, and the Quest tasks, whose wand of cold and frost horn lie together on the start square,
  cannot be solved there (a single object needs no menu). Here NLE's known steps run unchanged but for that branch:
  a page without ``--More--`` stays open, and the agent answers it with the keys its actions type (``apply`` types
  ``a``, ``southwest`` ``b``, ``pickup`` ``,``, which selects the whole page; ``more`` confirms, and closes a
  menu that only shows things, which NetHack ends with Space or Esc, keys no MiniHack action types). The open
  menu is the message, as BALROG's screen-reading message would be. ``allow_all_modes=True`` would also leave
  text prompts and ``--More--`` to the env, whose extra steps MiniHack charges with the step penalty.
  ``answer_menus=False`` restores BALROG's behaviour exactly.
- ``fix_moon_phase=True`` (an nle 1.x option, absent from NLE 0.9.0): the moon phase and Friday the 13th change luck;
  BALROG takes them from the clock, which would break seeded determinism.
- The game is seeded with the episode's seed for both of NetHack's RNGs; BALROG seeds the core RNG only
  (``GymV21CompatibilityV0.reset`` calls ``env.seed(seed)``, NLE draws the display seed).
- MiniHack's own step cap is lifted; the text env counts the agent's actions (NLE's count would include the
  env's own ``--More--`` steps, which in BALROG happen inside NLE and are not counted either).

Boxoban works offline. MiniHack reads its levels from ``minihack/dat/boxoban-levels-master``, which its download
script fills from the network at run time. The env instead loads the levels vendored under
``automem/envs/data/boxoban`` (the first file of DeepMind's medium/train and hard sets, 1,000 levels each,
Apache-2.0; see the README there). Three MiniHack bugs are worked around on the way:

- ``BoxoHack.reset`` takes no ``seed`` argument, so Gymnasium-style ``reset(seed=...)`` fails
  (NetHack-LE/minihack#29); the env seeds through NLE's ``seed()`` and calls ``reset()`` without one.
- ``BoxoHack`` picks each level with the global ``random.choice``, so the same seed gives different levels;
  the env picks from a ``random.Random`` seeded by the episode's seed (no upstream issue found).
- With NLE 1.x, ``NLE.reset`` calls ``_is_episode_end`` before ``BoxoHack.reset`` has set the level's goal
  positions, so the first reset raises ``AttributeError`` (no upstream issue found; NetHack-LE/minihack#29
  reports the same method failing); the env clears the goals before each reset.
"""

from __future__ import annotations

import random
import re
import threading
from importlib import resources
from typing import Any

import numpy as np

from automem.envs.nle_base import _MORE, _MORE_KEY, NLETextEnv

OBSERVATION_KEYS = ("glyphs", "blstats", "message", "inv_letters", "inv_strs", "tty_chars", "chars")
BALROG_SETTINGS: dict[str, Any] = {
    "max_steps": 100,
    "character": "@",
    "autopickup": False,
    "penalty_step": -0.01,
    "penalty_time": 0.0,
    "penalty_mode": "constant",
}
_PATCH_LOCK = threading.Lock()  # envs may be built in threads; the loader patch below must not interleave
_BOXOBAN_SETS = {"MiniHack-Boxoban-Medium-v0": "medium/train", "MiniHack-Boxoban-Hard-v0": "hard"}
_MENU_HINT = "(a menu: an entry's letter selects it; more confirms or closes it)"
_MENU_END = re.compile(r"\((?:end|\d+ of \d+)\)$")  # tty's last row of a menu page


def waits_on_menu(env: Any) -> bool:
    """Whether ``env`` (NLE) waits on a menu page: a key is awaited (``xwaitforspace``) with no ``--More--``."""
    observation = env.last_observation
    tty = observation[env._observation_keys.index("tty_chars")]
    return bool(observation[env._internal_index][3]) and _MORE not in tty.tobytes()


def menu_text(tty_chars: np.ndarray) -> str:
    """The menu page on the screen as one line: its rows from the title down to ``(end)`` or ``(1 of 2)``."""
    rows = [bytes(r).decode("latin-1") for r in tty_chars]
    indent = len(rows[0]) - len(rows[0].lstrip())  # tty draws a menu from its title's column to the right
    kept: list[str] = []
    for row in rows:
        text = row[indent:].strip()
        if text:
            kept.append(text)
        if _MENU_END.search(text):
            break
    return " / ".join(kept)


def leave_menus_to_the_agent(env: Any) -> None:
    """Make an NLE env with ``allow_all_modes=False`` stop at a menu page instead of closing it unchosen.

    ``NLE.step`` hands each raw step to ``_perform_known_steps`` (``nle/env/base.py``, nle 1.3.0 and balrog-nle
    0.9.0 alike). This is that method with one branch changed: a page that waits for a key (``xwaitforspace``)
    without ``--More--`` on the screen is a menu page (tty shows ``(end)`` or ``(1 of 2)`` there), and it is
    returned to the agent instead of dismissed with Space. Except when Enter left it as it was: NetHack's tty
    ends a menu that only shows things (nothing to select) with Space or Esc, never Enter, and MiniHack's agent
    types neither; there NLE's Space closes it. Quitting (``exceptions=False``) and the screens after the end of
    a game (also one that ends on a ``--More--`` this loop answers) keep NLE's own handling. NLE internals, and
    MiniHack's ``_previous_action`` (the action of the step, set by ``MiniHack.step``): written against nle 1.3.0
    and minihack 1.0.2.
    """
    from nle.env.base import ASCII_ESC, ASCII_SPACE, SKIP_EXCEPTIONS

    original = env._perform_known_steps
    internal_index, state_index = env._internal_index, env._program_state_index
    message_index = env._message_index
    tty_index = env._observation_keys.index("tty_chars")
    shown = [b""]  # the menu page last left to the agent

    def perform_known_steps(observation: Any, done: bool, exceptions: bool = True) -> Any:
        while not done:
            if not exceptions or observation[state_index][0]:  # program_state[0]: the game is over
                return original(observation, done, exceptions=exceptions)
            internal = observation[internal_index]
            if internal[3]:  # xwaitforspace: a --More-- or a menu page
                screen = observation[tty_index].tobytes()
                if _MORE not in screen:
                    key = int(env.actions[env._previous_action])
                    if not (key == _MORE_KEY and screen == shown[0]):
                        shown[0] = screen
                        break  # the change: a menu page is left to the agent
                observation, done = env.nethack.step(ASCII_SPACE)
                continue
            if internal[2]:  # getlin: NLE declines text input
                observation, done = env.nethack.step(ASCII_ESC)
                continue
            if internal[1]:  # yn_function: kept open under MiniHack's allow_all_yn_questions=True
                message = bytes(observation[message_index])
                if env._allow_all_yn_questions or any(e in message for e in SKIP_EXCEPTIONS):
                    break
                observation, done = env.nethack.step(ASCII_ESC)
            break
        return observation, done

    env._perform_known_steps = perform_known_steps


def boxoban_levels(level_set: str) -> list[str]:
    """The vendored Boxoban levels of ``level_set`` (``medium/train`` or ``hard``), each as 10 text rows."""
    from minihack.envs.boxohack import load_boxoban_levels

    folder = resources.files("automem.envs").joinpath("data/boxoban", level_set)
    with resources.as_file(folder) as path:
        levels = load_boxoban_levels(str(path))
    if not levels:
        raise FileNotFoundError(f"no Boxoban levels under {folder}")
    return levels


def _offline_boxoban(task: str, **kwargs: Any) -> Any:
    """A MiniHack Boxoban env that reads the vendored levels and picks them with its own seeded generator."""
    import minihack.envs.boxohack as boxohack

    base = boxohack.MiniHackBoxobanHard if "Hard" in task else boxohack.MiniHackBoxobanMedium
    levels = boxoban_levels(_BOXOBAN_SETS[task])

    class OfflineBoxoban(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kw: Any) -> None:
            self.level_rng = random.Random(0)
            # BoxoHack.__init__ loads its level folder before anything can be passed in; hand it ours instead.
            with _PATCH_LOCK:
                original = boxohack.load_boxoban_levels
                boxohack.load_boxoban_levels = lambda _path: list(levels)
                try:
                    super().__init__(**kw)
                finally:
                    boxohack.load_boxoban_levels = original

        def reset(self, *args: Any, **kw: Any) -> Any:
            # NLE's reset asks _is_episode_end, which reads the goal set BoxoHack.reset only sets afterwards:
            # unset, the first reset raises AttributeError; stale, it compares with the previous level's goals.
            self._goal_pos_set = None
            return super().reset(*args, **kw)

        def get_lvl_gen(self) -> Any:
            state = random.getstate()
            random.seed(self.level_rng.random())  # BoxoHack draws the level with the global random.choice
            try:
                return super().get_lvl_gen()
            finally:
                random.setstate(state)

    return OfflineBoxoban(**kwargs)


class MiniHackTextEnv(NLETextEnv):
    """One MiniHack task through text.

    Args:
        task: MiniHack's Gymnasium id, e.g. ``MiniHack-MazeWalk-9x9-v0``.
        max_steps: Agent actions after which the episode is truncated (BALROG: 100).
        auto_more: Answer ``--More--`` prompts automatically (BALROG's ``skip_more``).
        answer_menus: Leave menus ("Pick up what?") open for the agent to answer. False is BALROG's behaviour:
            NLE closes every menu with nothing chosen, so ``pickup`` on a pile takes nothing (module docstring).
        **kwargs: Passed to the MiniHack environment (BALROG's ``character``, ``autopickup``, ``penalty_step``...
            by default).
    """

    env_id = "minihack-mazewalk-9x9-v0"
    family = "minihack"

    def __init__(
        self,
        task: str,
        max_steps: int = 100,
        auto_more: bool = True,
        answer_menus: bool = True,
        **kwargs: Any,
    ) -> None:
        settings = {k: v for k, v in BALROG_SETTINGS.items() if k != "max_steps"}
        settings.update(kwargs)
        self.task = task
        self.answer_menus = answer_menus
        super().__init__(max_steps, auto_more, task=task, answer_menus=answer_menus, **settings)

    def _make_nle(self, **kwargs: Any) -> Any:
        import gymnasium as gym
        import minihack  # noqa: F401  (registers the MiniHack ids with Gymnasium)
        from gymnasium.envs.registration import load_env_creator

        task = kwargs.pop("task")
        answer_menus = kwargs.pop("answer_menus")
        kwargs = {
            "observation_keys": OBSERVATION_KEYS,
            # The text env counts its own steps; MiniHack's cap must not cut in first (--More-- steps count there).
            "max_episode_steps": 10**12,
            "fix_moon_phase": True,
            "savedir": None,
            **kwargs,
        }
        if task in _BOXOBAN_SETS:
            env = _offline_boxoban(task, **kwargs)
        else:
            # The class itself, not gym.make: make() would take max_episode_steps for its own TimeLimit wrapper.
            spec = gym.spec(task)
            entry = spec.entry_point
            creator = entry if callable(entry) else load_env_creator(str(entry))
            env = creator(**{**spec.kwargs, **kwargs})
        if answer_menus and not env._allow_all_modes:
            leave_menus_to_the_agent(env)
        return env

    def remove_hooks(self) -> None:
        super().remove_hooks()
        vars(self._env).pop("_perform_known_steps", None)  # leave_menus_to_the_agent's patch, where installed

    def _observe(self, obs: dict[str, np.ndarray], messages: list[str], ending: str = "") -> str:
        if not ending and not any(messages) and waits_on_menu(self._env):
            # A menu is drawn on the screen, not sent as a message. BALROG's message is read from the screen
            # (balrog-nle's NLELanguageObsv.text_message, win/rl/language_wrapper/main.cpp: the rows from the top
            # to the one ending in "(end)" or "(1 of 2)"), so an open menu is its message there; the same here.
            messages = [f"{menu_text(obs['tty_chars'])} {_MENU_HINT}"]
        return super()._observe(obs, messages, ending)

    def _seed_nle(self, seed: int) -> None:
        self._env.seed(seed, seed, reseed=False)
        if hasattr(self._env, "level_rng"):
            self._env.level_rng.seed(seed)

    def _reset_nle(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # No seed argument: BoxoHack.reset does not take one (NetHack-LE/minihack#29); _seed_nle has seeded.
        return self._env.reset()

    def _progression(self, obs: dict[str, np.ndarray], end_status: Any) -> float:
        return 1.0 if getattr(end_status, "name", "") == "TASK_SUCCESSFUL" else 0.0

    def _extra_info(self, obs: dict[str, np.ndarray], end_status: Any) -> dict[str, Any]:
        return {"success": getattr(end_status, "name", "") == "TASK_SUCCESSFUL", "task": self.task}
