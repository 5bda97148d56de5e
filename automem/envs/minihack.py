"""MiniHack as text games: the eight tasks BALROG evaluates, with BALROG's settings.

Settings from BALROG's config (``minihack_kwargs``): 100-step cap, autopickup off, ``--More--`` skipped, and the
task's own reward and penalties. Success is the episode's end status (``TASK_SUCCESSFUL``), never ``reward > 0``:
MiniHack's shaped rewards (Boxoban's per-boulder bonus) are positive without a success. Progression is 1.0 on
success and 0.0 otherwise, as in BALROG.

Boxoban works offline. MiniHack reads its levels from ``minihack/dat/boxoban-levels-master``, which its download
script fills from the network at run time. The env instead loads the levels vendored under
``automem/envs/data/boxoban`` (the first file of DeepMind's medium/train and hard sets, 1,000 levels each,
Apache-2.0; see the README there). Two MiniHack bugs are worked around on the way:

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
import threading
from importlib import resources
from typing import Any

import numpy as np

from automem.envs.nle_base import NLETextEnv

OBSERVATION_KEYS = ("glyphs", "blstats", "message", "inv_letters", "inv_strs", "tty_chars", "chars")
BALROG_SETTINGS: dict[str, Any] = {
    "max_steps": 100,
    "autopickup": False,
    "penalty_step": -0.01,
    "penalty_time": 0.0,
    "penalty_mode": "constant",
}
_PATCH_LOCK = threading.Lock()  # envs may be built in threads; the loader patch below must not interleave
_BOXOBAN_SETS = {"MiniHack-Boxoban-Medium-v0": "medium/train", "MiniHack-Boxoban-Hard-v0": "hard"}


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
        **kwargs: Passed to the MiniHack environment (BALROG's ``autopickup``, ``penalty_step``... by default).
    """

    env_id = "minihack-mazewalk-9x9-v0"
    family = "minihack"

    def __init__(self, task: str, max_steps: int = 100, auto_more: bool = True, **kwargs: Any) -> None:
        settings = {k: v for k, v in BALROG_SETTINGS.items() if k != "max_steps"}
        settings.update(kwargs)
        self.task = task
        super().__init__(max_steps, auto_more, task=task, **settings)

    def _make_nle(self, **kwargs: Any) -> Any:
        import gymnasium as gym
        import minihack  # noqa: F401  (registers the MiniHack ids with Gymnasium)
        from gymnasium.envs.registration import load_env_creator

        task = kwargs.pop("task")
        kwargs = {
            "observation_keys": OBSERVATION_KEYS,
            # The text env counts its own steps; MiniHack's cap must not cut in first (--More-- steps count there).
            "max_episode_steps": 10**12,
            "fix_moon_phase": True,
            "savedir": None,
            **kwargs,
        }
        if task in _BOXOBAN_SETS:
            return _offline_boxoban(task, **kwargs)
        # The class itself, not gym.make: make() would take max_episode_steps for its own TimeLimit wrapper.
        spec = gym.spec(task)
        entry = spec.entry_point
        creator = entry if callable(entry) else load_env_creator(str(entry))
        return creator(**{**spec.kwargs, **kwargs})

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
