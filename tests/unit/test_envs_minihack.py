# Run: .venv/bin/python -m pytest tests/unit/test_envs_minihack.py
"""MiniHack as text: Boxoban offline from the vendored levels, success from the end status, BALROG's settings."""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import zipfile

import pytest

from automem.envs import make_env
from automem.envs.minihack import boxoban_levels

_BACK_TO_BOXOBAN = str.maketrans({"`": "$", "{": ".", ".": " "})


def _level_on_screen(obs: str) -> str:
    """The Boxoban level drawn on the map, in Boxoban's own notation (MiniHack draws walls as iron bars '#')."""
    rows = [r.strip() for r in obs.split("Map:\n", 1)[1].splitlines() if r.strip()]
    return "".join(r.translate(_BACK_TO_BOXOBAN) + "\n" for r in rows)


def test_minihack_has_no_downloaded_levels_so_boxoban_runs_on_the_vendored_ones():
    import minihack.envs.boxohack as boxohack

    assert not os.path.exists(boxohack.LEVELS_PATH), "this test needs a MiniHack without downloaded levels"
    assert len(boxoban_levels("medium/train")) == 1000
    assert len(boxoban_levels("hard")) == 1000


@pytest.mark.parametrize(
    ("env_id", "level_set"),
    [("minihack-boxoban-medium-v0", "medium/train"), ("minihack-boxoban-hard-v0", "hard")],
)
def test_boxoban_resets_offline_onto_a_vendored_level_chosen_by_the_seed(
    env_id: str, level_set: str, monkeypatch
):
    def no_network(*args, **kwargs):
        raise AssertionError("Boxoban tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    levels = set(boxoban_levels(level_set))
    env = make_env(env_id)
    try:
        shown = {}
        for seed in (1, 2, 3, 1):
            obs, info = env.reset(seed=seed)
            level = _level_on_screen(obs)
            assert level in levels
            assert level.count("$") == 4 and level.count(".") == 4
            shown.setdefault(seed, level)
            assert shown[seed] == level
        assert len(set(shown.values())) == 3
        assert [a.name for a in env.actions] == ["north", "east", "south", "west"]
    finally:
        env.close()


def test_success_comes_from_the_end_status():
    env = make_env("minihack-mazewalk-9x9-v0")
    outcomes = []
    try:
        for seed in range(1, 6):
            env.reset(seed=seed)
            rng = random.Random(seed)
            while True:
                _, reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
                if terminated or truncated:
                    break
            success = info["end_status"] == "TASK_SUCCESSFUL"
            assert info["success"] == success and info["progression"] == (1.0 if success else 0.0)
            outcomes.append(success)
        assert any(outcomes), "some random walk should find the stairs in a 9x9 maze"
    finally:
        env.close()


def test_a_positive_reward_is_not_a_success():
    env = make_env("minihack-boxoban-medium-v0")
    try:
        env.reset(seed=1)
        status = type(env._env).StepStatus
        # Boxoban pays 0.1 for each boulder pushed onto a fountain; only the end status counts.
        assert env._progression(env._obs, status.RUNNING) == 0.0
        assert env._progression(env._obs, status.DEATH) == 0.0
        assert env._progression(env._obs, status.TASK_SUCCESSFUL) == 1.0
    finally:
        env.close()


@pytest.mark.parametrize(
    ("env_id", "n_actions"),
    [
        ("minihack-mazewalk-9x9-v0", 8),
        ("minihack-mazewalk-15x15-v0", 8),
        ("minihack-corridor-r3-v0", 11),
        ("minihack-corridorbattle-dark-v0", 8),
        ("minihack-quest-easy-v0", 32),
        ("minihack-quest-medium-v0", 32),
    ],
)
def test_balrog_settings(env_id: str, n_actions: int):
    env = make_env(env_id)
    try:
        assert env.max_steps == 100
        assert len(env.actions) == n_actions
        assert "!autopickup" in env._env.nethack.options
        obs, info = env.reset(seed=1)
        assert obs.startswith("Message: ") and "Map:" in obs and info["progression"] == 0.0
    finally:
        env.close()


def test_vendored_data_ships_in_the_wheel(tmp_path):
    """The levels and the progression table are package data: a wheel built from the tree carries them."""
    root = pathlib.Path(__file__).resolve().parents[2]
    src = tmp_path / "src"  # build from a copy, so the build leaves nothing in the working tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    for package in ("automem", "actors", "pipelines"):
        shutil.copytree(root / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("automem-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "automem/envs/data/nethack_progression_balrog.json",
        "automem/envs/data/boxoban/LICENSE",
        "automem/envs/data/boxoban/medium/train/000.txt",
        "automem/envs/data/boxoban/hard/000.txt",
    ):
        assert data in names
