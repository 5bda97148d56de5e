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

# tty_cursor: where the cursor is while the game selects a position; chars: the map under a menu drawn over it.
OBSERVATION_KEYS = (
    "glyphs",
    "blstats",
    "message",
    "inv_letters",
    "inv_strs",
    "tty_chars",
    "tty_cursor",
    "chars",
)
BALROG_SETTINGS: dict[str, Any] = {  # balrog/config/config.yaml's nle_kwargs (balrog-ai/BALROG)
    "max_steps": 100_000,  # max_episode_steps; the evaluator's cap is the env's (max_steps_per_episode: null)
    "no_progress_timeout": 150,
}
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
        answer_menus: Leave menus and questions open for the agent to answer (NLE's ``allow_all_modes`` and
            ``allow_all_yn_questions``). True is NetHackChallenge's setting and so BALROG's: its NetHack agent
            answers menus itself. False makes NLE close every menu unchosen and decline most questions, as it
            does for MiniHack in BALROG (``MiniHackTextEnv``'s ``answer_menus=False``).
        max_chars: The observation budget: a longer text is shortened least useful part first (``render``);
            2,400 is the ``nethack-v0`` scaffold's ``max_observation_chars``. None: never shortened.
    """

    env_id = "nethack-v0"
    family = "nethack"
    describe_prompts = True

    def __init__(
        self,
        max_steps: int = 1_000_000,
        no_progress_timeout: int = 10_000,
        auto_more: bool = True,
        character: str = "@",
        answer_menus: bool = True,
        max_chars: int | None = 2400,
    ) -> None:
        self._best = 0.0
        if max_chars is not None and max_chars < 200:
            raise ValueError("max_chars must be at least 200 (or None)")
        self.max_chars = max_chars
        self.answer_menus = answer_menus
        super().__init__(
            max_steps,
            auto_more,
            no_progress_timeout=no_progress_timeout,
            character=character,
            answer_menus=answer_menus,
            max_chars=max_chars,
        )

    def _make_nle(self, **kwargs: Any) -> Any:
        from nle.env.tasks import NetHackChallenge

        return NetHackChallenge(
            observation_keys=OBSERVATION_KEYS,
            character=kwargs["character"],
            # The text env counts its own steps; the game's cap must not cut in first (--More-- steps count there).
            max_episode_steps=10**12,
            no_progress_timeout=kwargs["no_progress_timeout"],
            allow_all_yn_questions=kwargs["answer_menus"],
            allow_all_modes=kwargs["answer_menus"],
            fix_moon_phase=True,
            savedir=None,
        )

    def _max_chars(self) -> int | None:
        return self.max_chars

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
