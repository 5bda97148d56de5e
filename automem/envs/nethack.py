"""Full NetHack as a text game (``nethack-v0``): NLE's ``NetHackChallenge-v0`` with BALROG's progression.

Progression is BALROG's: a table (``data/nethack_progression_balrog.json``) gives, for each dungeon depth
(``Dlvl:N``) and each experience level (``Xp:N``), the share of human games that got at least that far; an
episode's progression is the highest table entry it has reached, over both, kept as a running maximum (BALROG's
``Progress.update`` in ``balrog/environments/nle/progress.py``).

Seeding: ``NetHackChallenge`` replaces its ``seed`` and ``set_initial_seeds`` with functions that raise, to stop
seed hopping in the competition. A reproducible game needs the seeds set, so the env calls the
``Nethack.set_initial_seeds`` method of the class underneath (core and display RNG from the seed, no reseeding),
and turns on NLE's ``fix_moon_phase`` so that moon phase and Friday-the-13th luck come from the seed, not from
today's date.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from automem.envs.nle_base import NLETextEnv

OBSERVATION_KEYS = ("glyphs", "blstats", "message", "inv_letters", "inv_strs", "tty_chars")
_BL_DEPTH, _BL_XP, _BL_TIME = 12, 18, 20  # nle.nethack.NLE_BL_DEPTH, NLE_BL_XP, NLE_BL_TIME


@lru_cache(maxsize=1)
def progression_table() -> dict[str, float]:
    """BALROG's NetHack progression table: ``Dlvl:N`` and ``Xp:N`` to a fraction in [0, 1]."""
    text = resources.files("automem.envs").joinpath("data/nethack_progression_balrog.json").read_text()
    return {str(k): float(v) for k, v in json.loads(text).items()}


class NetHackTextEnv(NLETextEnv):
    """NetHack through text. See the module docstring for progression and seeding.

    Args:
        max_steps: Agent actions after which the episode is truncated; NetHackChallenge's own cap (1,000,000).
        no_progress_timeout: NetHackChallenge's abort after this many steps without the game clock moving
            (10,000 there; BALROG uses 150).
        auto_more: Answer ``--More--`` prompts automatically (BALROG's ``skip_more``).
        character: NLE's character spec; ``"@"`` picks a random role, race, gender and alignment from the seed.
    """

    env_id = "nethack-v0"
    family = "nethack"

    def __init__(
        self,
        max_steps: int = 1_000_000,
        no_progress_timeout: int = 10_000,
        auto_more: bool = True,
        character: str = "@",
    ) -> None:
        self._best = 0.0
        super().__init__(max_steps, auto_more, no_progress_timeout=no_progress_timeout, character=character)

    def _make_nle(self, **kwargs: Any) -> Any:
        from nle.env.tasks import NetHackChallenge

        return NetHackChallenge(
            observation_keys=OBSERVATION_KEYS,
            character=kwargs["character"],
            # The text env counts its own steps; the game's cap must not cut in first (--More-- steps count there).
            max_episode_steps=10**12,
            no_progress_timeout=kwargs["no_progress_timeout"],
            fix_moon_phase=True,
            savedir=None,
        )

    def _seed_nle(self, seed: int) -> None:
        nethack = self._env.nethack
        type(nethack).set_initial_seeds(nethack, seed, seed, False)
        self._best = 0.0

    def _progression(self, obs: dict[str, np.ndarray], end_status: Any) -> float:
        table = progression_table()
        blstats = obs["blstats"]
        for key in (f"Dlvl:{int(blstats[_BL_DEPTH])}", f"Xp:{int(blstats[_BL_XP])}"):
            self._best = max(self._best, table.get(key, 0.0))
        return self._best

    def _extra_info(self, obs: dict[str, np.ndarray], end_status: Any) -> dict[str, Any]:
        blstats = obs["blstats"]
        return {
            "depth": int(blstats[_BL_DEPTH]),
            "xp_level": int(blstats[_BL_XP]),
            "turn": int(blstats[_BL_TIME]),
        }
