# Run: .venv/bin/python -m pytest tests/unit/test_envs_nethack.py
"""NetHack as text: what a known seed shows, seeding through NLE, BALROG's progression, --More--, state keys."""

from __future__ import annotations

import re

import numpy as np
import pytest

from automem.envs import make_env
from automem.envs.nethack import progression_table
from automem.envs.nethack_text import describe_surroundings, glyph_table, where


@pytest.fixture(scope="module")
def env():
    e = make_env("nethack-v0")
    yield e
    e.close()


def test_known_seed_shows_surroundings_status_inventory_and_map(env):
    obs, info = env.reset(seed=3)
    lines = obs.splitlines()
    assert lines[0] == "Message: You are lucky!  Full moon tonight."
    assert (
        "Next to you: north floor; northeast tame little dog; east floor; southeast doorway; south wall; "
        "southwest wall; west floor; northwest floor." in lines
    )
    assert "- tame little dog: 1 step northeast" in lines
    assert "- fountain: 2 steps north" in lines
    assert "- doorway: 2 steps north and 5 steps west" in lines
    assert any(line.startswith("Status: HP 14/14, Pw 5/5, AC 4, experience level 1") for line in lines)
    inventory = lines[lines.index("Inventory:") + 1 : lines.index("Map:") - 1]
    assert [line[:2] for line in inventory] == [f"{c}:" for c in "abcdefghi"]
    assert "a: an uncursed +2 pair of leather gloves (being worn)" in inventory
    # The map is the screen's map rows, with the player where blstats says.
    map_rows = lines[lines.index("Map:") + 1 :]
    assert any("@" in row for row in map_rows)
    assert info["player_pos"] == [46, 6] and info["depth"] == 1 and info["xp_level"] == 1


def test_inventory_letters_are_the_games(env):
    env.reset(seed=8)
    obs, _, _, _, _ = env.step("wait")
    letters = [chr(c) for c in env._obs["inv_letters"].tolist() if c]
    inventory = obs.split("Inventory:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(":", 1)[0] for line in inventory] == letters


def test_seeds_are_set_through_nle_although_the_challenge_forbids_it(env):
    with pytest.raises(RuntimeError):
        env._env.seed(1, 1, False)  # NetHackChallenge's own seed() refuses, hence the class-level call
    first = env.reset(seed=21)[0]
    assert env.reset(seed=22)[0] != first
    assert env.reset(seed=21)[0] == first


def test_progression_is_balrogs_running_max_of_depth_and_level(env):
    table = progression_table()
    assert table["Dlvl:1"] == 0.0 and table["Xp:1"] == 0.0
    env.reset(seed=1)
    blstats = np.zeros(27, dtype=np.int64)
    obs = {"blstats": blstats}
    blstats[12], blstats[18] = 5, 3  # depth, experience level
    assert env._progression(obs, None) == max(table["Dlvl:5"], table["Xp:3"])
    blstats[12], blstats[18] = 2, 4  # back up the stairs: the best so far stays
    assert env._progression(obs, None) == max(table["Dlvl:5"], table["Xp:4"])
    env.reset(seed=1)  # a new episode starts from zero
    blstats[12], blstats[18] = 1, 1
    assert env._progression(obs, None) == 0.0


def test_default_caps_are_the_challenges(env):
    assert env.max_steps == 1_000_000
    assert env._env.no_progress_timeout == 10_000


def test_no_progress_timeout_truncates():
    e = make_env("nethack-v0", no_progress_timeout=3)
    try:
        e.reset(seed=2)
        ended = None
        for _ in range(10):
            obs, _, terminated, truncated, info = e.step("inventory")  # a menu: the game clock stands still
            if terminated or truncated:
                ended = (terminated, truncated)
                break
        assert ended == (False, True)
        assert info["end_status"] == "ABORTED"
        # NLE quits an aborted game; the last observation is still the game, not the quit screen.
        lines = obs.splitlines()
        assert lines[1] == "Episode ended: the game stopped it: no progress for too long."
        assert any(line.startswith("Status: HP 13/13,") and "dungeon level 1" in line for line in lines)
        assert info["player_pos"] != [0, 0] and info["depth"] == 1
    finally:
        e.close()


def test_more_prompts_are_answered_and_their_messages_kept():
    auto, raw = make_env("nethack-v0"), make_env("nethack-v0", auto_more=False)
    try:
        auto.reset(seed=0)
        raw.reset(seed=0)
        # quiver asks which item to ready; 's' (search's key) answers with an item the player lacks.
        for name in ("quiver", "search"):
            auto_obs, *_ = auto.step(name)
            raw_obs, *_ = raw.step(name)
        assert raw_obs.splitlines()[0] == "Message: You don't have that object. --More--"
        assert auto_obs.splitlines()[0].startswith(
            "Message: You don't have that object. What do you want to ready?"
        )
        assert "--More--" not in auto_obs
    finally:
        auto.close()
        raw.close()


def test_state_key_ignores_the_clock_but_not_the_map(env):
    _, info = env.reset(seed=5)
    obs = {k: v.copy() for k, v in env._obs.items()}
    key = env._info(obs, None)["state_key"]
    obs["blstats"][20] += 7  # turn counter
    assert env._info(obs, None)["state_key"] == key
    obs["glyphs"][0, 0] += 1
    assert env._info(obs, None)["state_key"] != key


def test_glyph_names_and_directions():
    import nle.nethack as nh

    names, kinds = glyph_table()
    assert names[nh.GLYPH_CMAP_OFF + 23] == "staircase up"
    assert names[nh.GLYPH_CMAP_OFF + 24] == "staircase down"
    assert names[nh.GLYPH_PET_OFF + nh.glyph_to_mon(nh.GLYPH_MON_OFF + 5)].startswith("tame ")
    assert where(0, -3) == "3 steps north" and where(2, 2) == "2 steps southeast"
    assert where(-1, 0) == "1 step west" and where(5, -2) == "2 steps north and 5 steps east"
    glyphs = np.full((21, 79), nh.GLYPH_CMAP_OFF, dtype=np.int16)  # unexplored everywhere
    glyphs[10, 40] = nh.GLYPH_MON_OFF  # the player (any monster glyph)
    glyphs[10, 43] = nh.GLYPH_CMAP_OFF + 24
    lines = describe_surroundings(glyphs, 40, 10)
    assert "- staircase down: 3 steps east" in lines


# Seeds whose first screen shows an object next to the player, and the game's own words for it when the player
# steps onto it ("You see here a brown potion." or, picked up, "g - a brown potion."). One per object class.
GAME_WORDS = [
    (144, "brown potion"),
    (42, "scroll labeled KIRJE"),
    (1949, "pink spellbook"),
    (2353, "short wand"),
    (2800, "copper ring"),
    (2643, "octagonal amulet"),
    (2136, "red gem"),
    (23, "crude ring mail"),
    (2797, "pair of buckled boots"),
]


@pytest.mark.parametrize(("seed", "words"), GAME_WORDS)
def test_objects_are_named_in_the_games_own_words(env, seed: int, words: str):
    obs, _ = env.reset(seed=seed)
    found = re.search(rf"^- {re.escape(words)}: 1 step (\w+)$", obs, re.MULTILINE)
    assert found, f"the observation should name {words!r} next to the player:\n{obs}"
    message = env.step(found.group(1))[0].splitlines()[0]
    assert re.search(rf"\b(a|an|\d+) {re.escape(words)}\b", message), message


def test_a_scroll_seen_at_reset_is_the_scroll_the_game_picks_up(env):
    obs, _ = env.reset(seed=8)
    assert "- scroll labeled ETAOIN SHRDLU: 2 steps west" in obs.splitlines()
    env.step("west")
    assert env.step("west")[0].splitlines()[0] == "Message: i - a scroll labeled ETAOIN SHRDLU."


def test_every_object_glyph_names_its_class():
    import nle.nethack as nh

    names, _ = glyph_table()
    word = {
        nh.POTION_CLASS: " potion",
        nh.WAND_CLASS: " wand",
        nh.RING_CLASS: " ring",
        nh.AMULET_CLASS: " amulet",
        nh.SPBOOK_CLASS: " spellbook",
    }
    seen = set()
    for glyph in range(nh.GLYPH_OBJ_OFF, nh.GLYPH_OBJ_OFF + nh.NUM_OBJECTS):
        obj = nh.objclass(nh.glyph_to_obj(glyph))
        klass, name = ord(obj.oc_class), names[glyph]
        if not nh.OBJ_DESCR(obj):
            continue
        seen.add(klass)
        if klass == nh.SCROLL_CLASS:
            assert name.startswith("scroll labeled ") or name == "unlabeled scroll", name
        elif klass == nh.GEM_CLASS:
            assert name.endswith((" gem", " stone")), name
        elif klass in word and name not in ("Amulet of Yendor", "paperback book"):
            assert name.endswith(word[klass]), name
        else:
            assert not name.endswith(tuple(word.values())) and not name.startswith("scroll"), name
    assert {nh.POTION_CLASS, nh.SCROLL_CLASS, nh.WAND_CLASS, nh.RING_CLASS, nh.ARMOR_CLASS} <= seen


def test_the_you_see_list_is_bounded_but_says_what_it_leaves_out():
    import nle.nethack as nh

    glyphs = np.full((21, 79), nh.GLYPH_CMAP_OFF, dtype=np.int16)  # unexplored everywhere
    glyphs[10, 40] = nh.GLYPH_MON_OFF  # the player
    for i in range(12):  # twelve fountains in a row below the player
        glyphs[15, 3 * i] = nh.GLYPH_CMAP_OFF + 31
    glyphs[20, 78] = nh.GLYPH_CMAP_OFF + 24  # the stairs down, far away
    lines = describe_surroundings(glyphs, 40, 10, per_name=8)
    assert sum(line.startswith("- fountain: ") for line in lines) == 9  # eight squares, then a count
    assert "- fountain: 4 more, farther away" in lines
    assert "- staircase down: 10 steps south and 38 steps east" in lines
    # A shop's worth of different objects: the list stops at max_lines, but the stairs keep their line.
    for i in range(60):
        glyphs[1 + i // 30, 2 + (i * 2) % 60] = nh.GLYPH_OBJ_OFF + 100 + i
    lines = describe_surroundings(glyphs, 40, 10, per_name=8, max_lines=40)
    entries = [
        line for line in lines if line.startswith("- ") and "more" not in line and "not listed" not in line
    ]
    assert len(entries) == 40
    assert "- staircase down: 10 steps south and 38 steps east" in lines
    assert lines[-1] == "- not listed, farther away: 22 kinds of objects (see the map)"
