# Run: .venv/bin/python -m pytest tests/unit/test_envs_minihack.py
"""MiniHack as text: Boxoban offline from the vendored levels, success from the end status, BALROG's settings,
menus left open so the Quest can be won."""

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
from automem.envs.minihack import boxoban_levels, menu_text, waits_on_menu
from automem.envs.nle_base import question_choices

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
        # The real thing: on this level one push east puts a boulder onto a fountain (three remain).
        obs, _ = env.reset(seed=6)
        assert "- boulder: 1 step east" in obs and "- fountain: 2 steps east" in obs
        _, reward, terminated, truncated, info = env.step("east")
        assert reward > 0 and not terminated and not truncated
        assert info["success"] is False and info["progression"] == 0.0 and info["end_status"] == "RUNNING"
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["minihack-boxoban-medium-v0", "minihack-boxoban-hard-v0"])
def test_boxoban_lists_all_four_boulders_and_fountains(env_id: str):
    env = make_env(env_id)
    try:
        for seed in (1, 3):
            obs, _ = env.reset(seed=seed)
            level = _level_on_screen(obs)
            lines = obs.splitlines()
            assert sum(line.startswith("- boulder: ") for line in lines) == level.count("$") == 4
            assert sum(line.startswith("- fountain: ") for line in lines) == level.count(".") == 4
    finally:
        env.close()


def test_a_won_episode_ends_on_the_last_game_state_not_the_quit_screen():
    env = make_env("minihack-mazewalk-9x9-v0")
    try:
        env.reset(seed=7)  # the stairs down are one step west
        obs, reward, terminated, truncated, info = env.step("west")
        assert terminated and not truncated and info["end_status"] == "TASK_SUCCESSFUL" and info["success"]
        lines = obs.splitlines()
        assert lines[1] == "Episode ended: the task is done (success)."
        assert any(line.startswith("Status: HP 15/15,") and "dungeon level 1" in line for line in lines)
        assert "Position: x=36, y=9." in obs and info["player_pos"] == [36, 9]
        assert "edge of the map" not in obs and "quit in The Dungeons of Doom" not in obs
        assert "@" in obs.split("Map:\n", 1)[1]
    finally:
        env.close()


def test_a_death_ends_on_the_fatal_screen_with_its_messages():
    env = make_env("minihack-corridorbattle-dark-v0", max_steps=200)
    try:
        env.reset(seed=0)
        rng = random.Random(0)
        for _ in range(env.max_steps):  # this random walk is killed by a giant rat at step 104
            obs, reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
            if terminated or truncated:
                break
        assert terminated and info["end_status"] == "DEATH" and not info["success"]
        lines = obs.splitlines()
        assert lines[0] == "Message: The giant rat bites! You die..."
        assert lines[1] == "Episode ended: you died."
        assert "- giant rat: 1 step southeast" in lines
        assert any(line.startswith("Status: HP 0/16,") and "dungeon level 1" in line for line in lines)
        assert "Killed by" not in obs and info["player_pos"] != [0, 0]
    finally:
        env.close()


def test_the_step_cap_says_the_episode_ended():
    env = make_env("minihack-quest-easy-v0", max_steps=2)
    try:
        env.reset(seed=1)
        assert "Episode ended" not in env.step("wait")[0]
        obs, _, terminated, truncated, _ = env.step("wait")
        assert truncated and not terminated
        assert obs.splitlines()[1] == "Episode ended: the step cap of 2 actions was reached."
    finally:
        env.close()


def test_a_question_no_action_can_answer_is_cancelled():
    # A Valkyrie's food ration is item d; no MiniHack action types 'd', so "eat" could never be answered.
    auto = make_env("minihack-quest-easy-v0", character="val-hum-neu-fem")
    raw = make_env("minihack-quest-easy-v0", character="val-hum-neu-fem", auto_more=False)
    try:
        for env in (auto, raw):
            obs, _ = env.reset(seed=1)
            assert "d: an uncursed food ration" in obs
        obs, *_ = auto.step("eat")
        assert obs.splitlines()[0] == (
            "Message: What do you want to eat? [d or ?*] (no action types any of these answers, so the question "
            "was cancelled) Never mind."
        )
        _, _, _, _, info = auto.step("east")  # the game is back on the map: east moves
        assert info["player_pos"][0] == auto.reset(seed=1)[1]["player_pos"][0] + 1
        # Left open (BALROG's way), every key but Enter is refused as an answer and the question comes back.
        assert raw.step("eat")[0].splitlines()[0] == "Message: What do you want to eat? [d or ?*]"
        assert raw.step("east")[0].splitlines()[0].endswith("What do you want to eat? [d or ?*]")
        assert raw.step("more")[0].splitlines()[0] == "Message: Never mind."
    finally:
        auto.close()
        raw.close()


def test_a_question_with_a_typeable_answer_stays_open():
    env = make_env("minihack-quest-medium-v0")  # a Knight: apples g, carrots h; 'h' is west's key
    try:
        env.reset(seed=2)
        assert env.step("eat")[0].splitlines()[0] == "Message: What do you want to eat? [gh or ?*]"
        assert env.step("west")[0].splitlines()[0] == "Message: This carrot is delicious!"
    finally:
        env.close()


def _inventory(obs: str) -> list[str]:
    return obs.split("Inventory:\n", 1)[1].split("\n\nMap:", 1)[0].splitlines()


def test_pickup_on_the_quest_start_square_takes_the_wand_then_the_horn():
    """Regression: NLE's allow_all_modes=False closed the "Pick up what?" menu unchosen, so nothing was picked up."""
    env = make_env(
        "minihack-quest-easy-v0"
    )  # seed 0: a priest with items a-i, on the wand of cold and frost horn
    try:
        obs, _ = env.reset(seed=0)
        before = _inventory(obs)
        assert len(before) == 9 and not any("wand" in line or "horn" in line for line in before)
        obs, *_ = env.step("pickup")
        hint = "(a menu: an entry's letter selects it; more confirms or closes it)"
        menu = "Pick up what? / Wands / a - a blessed long wand / Tools / b - a blessed horn / (end)"
        assert obs.splitlines()[0] == f"Message: {menu} {hint}"
        assert "a - a blessed long wand" in obs.split("Map:\n", 1)[1]  # drawn over the map too
        obs, *_ = env.step("apply")  # types 'a': selects the wand
        assert obs.splitlines()[0] == f"Message: {menu.replace('a - ', 'a + ')} {hint}"
        obs, *_ = env.step("more")
        assert obs.splitlines()[0] == "Message: j - a blessed long wand."
        assert _inventory(obs) == before + ["j: a blessed long wand"]
        obs, *_ = env.step("pickup")  # one object left: NetHack takes it without a menu
        assert obs.splitlines()[0] == "Message: k - a blessed horn."
        assert _inventory(obs) == before + ["j: a blessed long wand", "k: a blessed horn"]
    finally:
        env.close()


def test_quest_easy_is_won_by_freezing_the_lava_with_the_wand():
    env = make_env("minihack-quest-easy-v0")
    try:
        env.reset(seed=0)
        for action in ("pickup", "pickup", "more"):  # ',' in the menu selects both entries
            obs, *_ = env.step(action)
        assert obs.splitlines()[0] == "Message: j - a blessed long wand.  k - a blessed horn."
        assert env.step("zap")[0].splitlines()[0] == "Message: What do you want to zap? [j or ?*]"
        assert env.step("south")[0].splitlines()[0] == "Message: In what direction?"  # south types 'j'
        obs, *_ = env.step("east")
        assert obs.splitlines()[0] == "Message: The lava cools and solidifies."
        assert "j: a blessed wand of cold" in _inventory(obs)  # the effect identified it
        for action in (
            ["east"] * 12 + ["southeast"] + ["east"] * 20
        ):  # over the ice, then through two monsters
            _, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert terminated and not truncated and info["success"] and info["progression"] == 1.0
        assert info["end_status"] == "TASK_SUCCESSFUL" and reward == 1.0 and info["step"] == 33
    finally:
        env.close()


def test_more_closes_a_menu_that_only_shows_things():
    """NetHack ends such a menu with Space or Esc, not Enter; MiniHack's agent has neither, so more must do it."""
    env = make_env("minihack-quest-easy-v0")
    try:
        env.reset(seed=0)
        nle_env = env._env
        nle_env.step(nle_env.actions.index(ord("i")))  # the game's inventory key, which no agent action types
        assert waits_on_menu(nle_env)
        obs, *_ = env.step("more")
        assert not waits_on_menu(nle_env) and "(end)" not in obs
        obs, *_ = env.step("pickup")  # a menu to choose from still stays open
        assert waits_on_menu(nle_env) and obs.splitlines()[0].startswith("Message: Pick up what?")
    finally:
        env.close()


def test_menu_text_reads_the_page_from_its_title_to_its_last_row():
    import numpy as np

    screen = [
        "                    Pick up what?",
        "                    Wands",
        "   |.@.|            a - a wand",
        "   |...|            (1 of 2)",
        "   -----            b - not on this page",
    ]
    tty = np.array([list(row.ljust(80).encode()) for row in screen], dtype=np.uint8)
    assert menu_text(tty) == "Pick up what? / Wands / a - a wand / (1 of 2)"


def test_balrog_menus_close_with_nothing_chosen():
    """``answer_menus=False`` is BALROG's behaviour: NLE types Space at the menu, so pickup takes nothing."""
    env = make_env("minihack-quest-easy-v0", answer_menus=False)
    try:
        obs, _ = env.reset(seed=0)
        before = _inventory(obs)
        obs, *_ = env.step("pickup")
        assert obs.splitlines()[0] == "Message: (none)" and "Pick up what?" not in obs
        assert _inventory(obs) == before
    finally:
        env.close()


def test_remove_hooks_leaves_nle_as_it_steps_by_itself():
    """``remove_hooks`` (used by benchmarks/envs.py) undoes the end-state hooks and the menu patch alike."""
    env = make_env("minihack-quest-easy-v0")
    try:
        env.reset(seed=0)
        nle_env = env._env
        patched = {"_quit_game", "_perform_known_steps"}
        assert patched <= set(vars(nle_env)) and "step" in vars(nle_env.nethack)
        env.remove_hooks()
        assert not patched & set(vars(nle_env)) and "step" not in vars(nle_env.nethack)
        nle_env.step(env._indices[[a.name for a in env.actions].index("pickup")])
        assert not waits_on_menu(nle_env)  # NLE's own handling closes the menu with nothing chosen
    finally:
        env.close()


def test_question_choices():
    assert question_choices("What do you want to zap? [f or ?*]") == {"f"}
    assert question_choices("What do you want to wield? [- a-c f or ?*]") == {"-", "a", "b", "c", "f"}
    assert question_choices("Really attack the guard? [yn] (n)") == {"y", "n"}
    assert question_choices("What do you want to eat? [?*]") == set()
    assert question_choices("You see here a [broken] wand.") is None
    assert question_choices("Hello.") is None


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
        assert env._env.character == ("kni-hum-law-fem" if "battle" in env_id or "medium" in env_id else "@")
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
