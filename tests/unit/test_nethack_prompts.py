# Run: .venv/bin/python -m pytest tests/unit/test_nethack_prompts.py
"""NetHack's open menus, questions and position selection in the text (issue 17, items 1-4, 7, 8)."""

from __future__ import annotations

import numpy as np
import pytest

from automem.envs import list_envs, make_env
from automem.envs.base import actions_now
from automem.envs.nethack import BALROG_SETTINGS


@pytest.fixture(scope="module")
def env():
    e = make_env("nethack-v0")
    yield e
    e.close()


def _head(obs: str) -> list[str]:
    """The lines before the surroundings: the message and what the game waits on."""
    lines = obs.splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("Next to you"))]


def test_a_menu_shows_its_question_entries_page_marker_and_keys(env):
    env.reset(seed=4)  # a Knight
    obs, *_ = env.step("takeoffall")
    head = _head(obs)
    assert head[0] == "Message: (none)"
    assert head[1] == "Menu open, page (end):"
    assert "  What type of things do you want to take off?" in head
    assert "  a - All worn types" in head and "  U - Items known to be Uncursed" in head
    assert head[-2].startswith("Menu keys: letter a, letter b, letter c, letter B, letter U select entries")
    assert [a.name for a in actions_now(env)] == ["letter a", "letter b", "letter c", "letter B", "letter U"]
    # The map under the menu is the map, not the menu drawn over it.
    map_rows = obs.split("\nMap:\n", 1)[1]
    assert "All worn types" not in map_rows and "@" in map_rows


def test_a_long_menu_shows_its_title_and_page_marker(env):
    env.reset(seed=0)
    head = _head(env.step("enhance")[0])
    assert head[1] == "Menu open, page (1 of 2):"
    assert head[2] == "  Current skills:"
    assert any("mace" in line and "[Basic]" in line for line in head)
    assert head[-2].startswith("Menu keys: nothing to select; space shows the next page")
    head = _head(env.step("space")[0])
    assert head[1] == "Menu open, page (2 of 2):" and any("clerical spells" in line for line in head)


def test_travel_describes_the_cursor_and_what_is_under_it(env):
    env.reset(seed=0)
    head = _head(env.step("travel")[0])
    assert head[1].startswith("Selecting a position (Where do you want to travel to?): the cursor is on you")
    env.step("north")
    head = _head(env.step("west")[0])
    assert head[1] == (
        "Selecting a position (Where do you want to travel to?): the cursor is at x=9, y=5, "
        "1 step northwest of you, on: wall; the game says: wall (no travel path)."
    )
    assert head[2].startswith("Position keys:")
    head = _head(env.step("esc")[0])  # cancelled: nothing selects any more
    assert head == ["Message: (none)", ""]


def test_the_knights_apples_are_eaten_through_their_letter(env):
    env.reset(seed=4)
    obs, *_ = env.step("eat")
    head = _head(obs)
    assert head[0] == "Message: What do you want to eat? [gh or ?*]"
    assert head[1].startswith(
        "Question: answer with letter g (12 uncursed apples), letter h (14 uncursed carrots)"
    )
    names = [a.name for a in actions_now(env)]
    assert names[:2] == ["letter g", "letter h"] and "letter a" in names
    assert "letter g" not in [a.name for a in env.actions]  # the static list stays as it was
    obs, *_ = env.step("letter g")
    assert "g: 11 uncursed apples" in obs.splitlines()
    assert actions_now(env) == []  # no question open: no letters offered


def test_every_item_letter_and_gold_can_be_typed(env):
    env.reset(seed=4)
    for c in "gmvGIMOSV$":
        assert c in env._letter_index, c


def test_repeated_more_messages_are_all_kept(env):
    """Two identical --More-- screens in a row are two messages (the kitten picks up, drops, picks up...)."""
    env.reset(seed=2)
    first = "The kitten picks up a gold piece."

    def screen(message: str, more: bool) -> dict[str, np.ndarray]:
        tty = np.full((24, 80), ord(" "), dtype=np.uint8)
        top = (message + ("--More--" if more else "")).encode()
        tty[0, : len(top)] = list(top)
        raw = np.zeros(256, dtype=np.uint8)
        raw[: len(message)] = list(message.encode())
        return {**env._obs, "tty_chars": tty, "message": raw}

    script = [
        screen(first, True),  # the same message again: a new pline
        screen("The kitten drops a gold piece.", True),
        screen("The kitten drops a gold piece.", False),  # again, shown without --More--
        screen("The kitten drops a gold piece.", False),  # stale buffer: nothing new on the top line...
    ]
    script[-1]["tty_chars"][0] = ord(" ")  # ...which is blank
    calls = iter(script)
    original = env._env.step
    env._env.step = lambda _key: (next(calls), 0.0, False, False, {"end_status": None})
    env._unanswerable = lambda obs: False
    try:
        messages = [first]
        obs = screen(first, True)
        # Three --More-- answers: the fourth screen is only read if the third still waited (it does not).
        env._skip_more(obs, 0.0, False, False, {}, messages)
    finally:
        env._env.step = original
        del env._unanswerable
    assert messages == [first, first, "The kitten drops a gold piece.", "The kitten drops a gold piece."]


def test_nethack_balrog_has_balrogs_caps_and_is_marked():
    e = make_env("nethack-balrog-v0")
    try:
        assert e.max_steps == BALROG_SETTINGS["max_steps"] == 100_000
        assert e._env.no_progress_timeout == BALROG_SETTINGS["no_progress_timeout"] == 150
        assert e.answer_menus and e._env._allow_all_modes  # NetHackChallenge's setting, so BALROG's
    finally:
        e.close()
    closed = make_env("nethack-v0", answer_menus=False)
    try:
        closed.reset(seed=4)
        obs, *_ = closed.step("takeoffall")  # NLE closes the menu unchosen
        assert "Menu open" not in obs
    finally:
        closed.close()
    described = {s.id: s.description for s in list_envs()}
    assert "BALROG" in described["nethack-balrog-v0"]


def test_the_budget_cuts_the_map_first_and_keeps_the_message_and_menu():
    """A crowded screen: seed 3's inventory menu over the level, in less room than the full text needs."""
    full_env = make_env("nethack-v0", max_chars=None)
    try:
        full_env.reset(seed=3)
        full = full_env.step("inventory")[0]
    finally:
        full_env.close()
    head = _head(full)
    assert any(line.startswith("Menu open") for line in head)
    map_part = full.split("\nMap:\n", 1)[1]
    for budget, expect in [
        (len(full) - 5, "Map (cut to the part around you"),
        (len(full) - len(map_part), "Map: left out to fit the observation budget."),
        (len(full) - len(map_part) - 200, "(names left out to fit)"),
    ]:
        e = make_env("nethack-v0", max_chars=budget)
        try:
            e.reset(seed=3)
            obs = e.step("inventory")[0]
        finally:
            e.close()
        assert len(obs) <= budget
        assert _head(obs) == head, "the message and the open menu are never cut first"
        assert expect in obs
        assert any(line.startswith("Status: ") for line in obs.splitlines())
        if expect.startswith("Map (cut"):
            window = obs.split(expect, 1)[1]
            assert "@" in window and "Inventory:\n" in obs and "(names left out" not in obs


def test_the_default_budget_holds_on_a_long_random_game():
    import random

    e = make_env("nethack-v0")
    try:
        e.reset(seed=3)
        rng = random.Random(3)
        longest = 0
        for _ in range(150):
            obs, _, terminated, truncated, _ = e.step(rng.randrange(len(e.actions)))
            longest = max(longest, len(obs))
            assert len(obs) <= 2400
            assert obs.startswith("Message: ")
            if terminated or truncated:
                break
    finally:
        e.close()


def test_env_list_marks_the_balrog_equivalent_ids(capsys):
    import json

    from pipelines.cli import main

    assert main(["env", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    marked = {i for i, line in lines.items() if line.endswith("[BALROG-equivalent]")}
    assert marked == {"crafter-balrog-v0", "nethack-balrog-v0"}
    assert main(["env", "list", "--json"]) == 0
    listed = {e["id"]: e["balrog_equivalent"] for e in json.loads(capsys.readouterr().out)}
    assert {i for i, v in listed.items() if v} == marked
