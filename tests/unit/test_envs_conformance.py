# Run: .venv/bin/python -m pytest tests/unit/test_envs_conformance.py
"""One conformance suite over every registered environment (in the manner of Gymnasium's tests/envs/test_envs.py):
API shape, seeded determinism (also across processes), pickling, progression bounds, step caps, invalid actions.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from automem.envs import ActionSpec, InvalidActionError, TextEnv, UnknownEnvError, list_envs, make_env
from automem.envs.base import validate_action

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV_IDS = [s.id for s in list_envs()]
FAKES = {"corridor-v0"}  # the test fake keeps its minimal info (no state_key)


def play(env: TextEnv, seed: int, steps: int) -> list[tuple[str, float, bool, bool, str]]:
    """Reset with ``seed`` and take ``steps`` actions drawn from a generator seeded with ``seed``."""
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, str(info.get("state_key")))]
    rng = random.Random(seed)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
        out.append((obs, reward, terminated, truncated, str(info.get("state_key"))))
        if terminated or truncated:
            break
    return out


@pytest.fixture(params=ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_issue_id_is_registered():
    expected = {
        "crafter-v0",
        "crafter-balrog-v0",
        "nethack-v0",
        "nethack-balrog-v0",
        "minihack-boxoban-hard-v0",
        "minihack-boxoban-medium-v0",
        "minihack-mazewalk-9x9-v0",
        "minihack-mazewalk-15x15-v0",
        "minihack-corridor-r3-v0",
        "minihack-corridorbattle-dark-v0",
        "minihack-quest-easy-v0",
        "minihack-quest-medium-v0",
        "corridor-v0",
    }
    assert expected <= set(ENV_IDS)
    assert all(s.description and "\n" not in s.description for s in list_envs())


def test_unknown_id_names_the_known_ones():
    with pytest.raises(UnknownEnvError) as err:
        make_env("crafter-v9")
    assert isinstance(err.value, KeyError)
    assert "crafter-v0" in str(err.value) and "nethack-v0" in str(err.value)


def test_api_shape(env_id: str):
    env = make_env(env_id)
    try:
        assert isinstance(env, TextEnv)
        assert env.env_id == env_id
        actions = env.actions
        assert actions and all(isinstance(a, ActionSpec) and a.name and a.description for a in actions)
        names = [a.name.lower() for a in actions]
        assert len(set(names)) == len(names), "action names must be unique (case-insensitively)"
        assert not any(n.strip().isdigit() for n in names), (
            "a digit string means an index, so no name may be one"
        )
        obs, info = env.reset(seed=1)
        assert isinstance(obs, str) and obs.strip()
        assert isinstance(info, dict) and info["step"] == 0 and 0.0 <= info["progression"] <= 1.0
        result = env.step(0)
        assert len(result) == 5
        obs, reward, terminated, truncated, info = result
        assert isinstance(obs, str) and isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert info["step"] == 1 and 0.0 <= info["progression"] <= 1.0
        if env_id not in FAKES:
            assert isinstance(info["state_key"], str) and info["state_key"]
            assert info["seed"] == 1
    finally:
        env.close()


def test_same_seed_same_observations_and_reset_forgets_the_past(env_id: str):
    a, b = make_env(env_id), make_env(env_id)
    try:
        first = play(a, seed=11, steps=40)
        play(b, seed=12, steps=15)  # a different game first: reset(seed) must not depend on it
        assert play(b, seed=11, steps=40) == first
        trajectories = {tuple(play(a, seed=s, steps=20)) for s in (1, 2, 3)}
        assert len(trajectories) > 1, "different seeds should give different games"
    finally:
        a.close()
        b.close()


# (seed, steps) per id for the cross-process test. Crafter's creatures lived in sets ordered by memory address,
# which diverged across processes only late (step 266 in one LOG run), so one Crafter episode runs past step
# 300: seed 235 is one the seeded random walk survives for 397 steps. The rest stay short to keep the test cheap.
LONG_RUNS = {"crafter-v0": (235, 360)}
SHORT_RUN = (7, 30)


def trajectory_digests() -> dict[str, tuple[str, int]]:
    """For every registered id: a hash of the observations, rewards and flags of a seeded random walk, and how
    many steps it took. Run in this process and in fresh interpreters by the cross-process test."""
    out = {}
    for spec in list_envs():
        seed, steps = LONG_RUNS.get(spec.id, SHORT_RUN)
        env = make_env(spec.id)
        try:
            digest = hashlib.sha256()
            obs, info = env.reset(seed=seed)
            digest.update(obs.encode())
            digest.update(str(info.get("state_key")).encode())
            rng = random.Random(seed)
            taken, ended = 0, False
            while taken < steps and not ended:
                obs, reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
                taken += 1
                ended = terminated or truncated
                digest.update(obs.encode())
                digest.update(repr((reward, terminated, truncated, info.get("state_key"))).encode())
            out[spec.id] = (digest.hexdigest(), taken)
        finally:
            env.close()
    return out


def test_same_seed_same_observations_across_processes():
    """Every env, in two fresh interpreters at once, gives the same bytes as in this one."""
    code = (
        "import json\n"
        "from tests.unit.test_envs_conformance import trajectory_digests\n"
        "print(json.dumps(trajectory_digests()))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            # Different string-hash seeds (and so different set orders of strings and memory layouts): nothing
            # may depend on them.
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(hash_seed)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for hash_seed in (1, 2)
    ]
    here = {k: list(v) for k, v in trajectory_digests().items()}
    assert set(here) == set(ENV_IDS)
    for env_id, (seed, steps) in LONG_RUNS.items():
        assert here[env_id][1] == steps, (
            f"{env_id} seed {seed} should run {steps} steps without the game ending"
        )
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().strip().splitlines()[-1]) == here


def test_pickling_gives_a_fresh_env_with_the_same_settings(env_id: str):
    env = make_env(env_id, max_steps=7)
    try:
        obs, _ = env.reset(seed=3)
        env.step(0)
        clone = pickle.loads(pickle.dumps(env))
        try:
            assert type(clone) is type(env) and clone.env_id == env_id
            assert [a.name for a in clone.actions] == [a.name for a in env.actions]
            assert clone.reset(seed=3)[0] == obs
            assert clone.max_steps == 7
        finally:
            clone.close()
    finally:
        env.close()


def test_progression_stays_in_bounds_and_steps_count(env_id: str):
    env = make_env(env_id)
    try:
        obs, info = env.reset(seed=5)
        rng = random.Random(5)
        for i in range(1, 151):
            obs, reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
            assert 0.0 <= info["progression"] <= 1.0
            assert info["step"] == i
            if terminated or truncated:
                break
    finally:
        env.close()


@pytest.mark.parametrize("cap", [1, 4])
def test_step_cap_truncates(env_id: str, cap: int):
    env = make_env(env_id, max_steps=cap)
    try:
        env.reset(seed=2)
        wait = _harmless_action(env)
        for i in range(1, cap + 1):
            obs, reward, terminated, truncated, info = env.step(wait)
            if terminated:
                return  # the game ended on its own first
            assert truncated == (i == cap)
        assert info["step"] == cap
    finally:
        env.close()


def _harmless_action(env: TextEnv) -> int:
    for name in ("wait", "search", "noop", "esc"):
        index = validate_action(env.actions, name)
        if index is not None:
            return index
    return 0


@pytest.mark.parametrize(
    # "²" and "١" (Arabic-Indic one) are str.isdigit(); int() rejects the first and reads the second as 1.
    "bad",
    ["", "  ", "definitely not an action", -1, 10_000, "10000", True, None, 2.5, "-1", "²", "١"],
)
def test_invalid_actions_raise_and_change_nothing(env_id: str, bad: object):
    env = make_env(env_id)
    try:
        obs, info = env.reset(seed=4)
        assert validate_action(env.actions, bad) is None  # type: ignore[arg-type]
        with pytest.raises(InvalidActionError):
            env.step(bad)  # type: ignore[arg-type]
        name = env.actions[0].name
        # Still at step 0 and still playable, by upper-cased name or by index as a string.
        assert env.step(f"  {name.upper()} ")[4]["step"] == 1
        assert env.step("0")[4]["step"] == 2
    finally:
        env.close()


def test_the_seed_contract_is_the_same_for_every_env(env_id: str):
    """Seeds are ints in [0, 2**64) everywhere (NetHack's seeds are 64-bit); anything else is a ValueError."""
    env = make_env(env_id)
    try:
        for bad in (-1, -5, 2**64, 2**70, 1.5, "3", True):
            with pytest.raises(ValueError, match="seed"):
                env.reset(seed=bad)  # type: ignore[arg-type]
        top = env.reset(seed=2**64 - 1)[0]
        assert env.reset(seed=np.uint64(2**64 - 1))[0] == top  # numpy ints are ints
        obs, info = env.reset(seed=0)
        assert info["step"] == 0 and env.step(0)[4]["step"] == 1  # a refused seed broke nothing
    finally:
        env.close()
