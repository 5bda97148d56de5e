# Run: .venv/bin/python -m pytest tests/unit/test_crafter_rules.py
"""Every Crafter rule our text states (action descriptions, the crafter-v0 scaffold's notes) is crafter's own rule.

The rules are read from the installed crafter package's ``data.yaml`` (``require`` for collecting, ``uses`` and
``where`` for placing, ``uses``, ``nearby`` and ``gives`` for making), not from a copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import crafter
import pytest
import yaml

from automem.envs import make_env
from automem.envs.crafter import ACTIONS
from automem.scaffold.io import load as load_scaffold

DATA = yaml.safe_load((Path(crafter.__file__).parent / "data.yaml").read_text())
DESCRIPTIONS = {a.name: a.description for a in ACTIONS}
_ITEM = r"(wood|stone|coal|iron|diamond|sapling)"


def _uses(text: str) -> dict[str, int]:
    """The materials a description says an action takes: ``from 1 wood and 1 stone``, ``put 1 stone``."""
    uses = {item: int(n) for n, item in re.findall(rf"(\d+) {_ITEM}\b", text)}
    if re.search(r"\ba sapling\b", text):
        uses["sapling"] = 1
    return uses


def _nearby(text: str) -> set[str]:
    """The stations a description says must be nearby; every "need" in it must be such a statement."""
    stated = re.findall(r"needs? (a table(?: and a furnace)?) nearby", text)
    assert len(stated) == len(re.findall(r"\bneeds?\b", text)), (
        f"a requirement the test cannot read: {text!r}"
    )
    return {w for s in stated for w in ("table", "furnace") if w in s}


def _where(text: str) -> set[str]:
    match = re.search(r"\(([^)]*)\)", text)
    if match:
        return set(re.split(r", | or ", match.group(1)))
    return {m for m in ("grass", "sand", "path", "water", "lava") if f"{m} cell" in text}


@pytest.mark.parametrize("name", sorted(DATA["make"]))
def test_make_descriptions_state_crafters_recipes(name: str):
    rule = DATA["make"][name]
    text = DESCRIPTIONS["make " + name.replace("_", " ")]
    assert _uses(text) == rule["uses"]
    assert _nearby(text) == set(rule["nearby"])
    assert rule["gives"] == 1 and re.search(rf"craft an? {name.replace('_', ' ')}\b", text)


@pytest.mark.parametrize("name", sorted(DATA["place"]))
def test_place_descriptions_state_crafters_rules(name: str):
    rule = DATA["place"][name]
    text = DESCRIPTIONS["place " + name]
    assert _uses(text) == rule["uses"]
    assert _where(text) == set(rule["where"])
    assert _nearby(text) == set(rule.get("nearby", []))


def test_place_furnace_states_no_table_and_crafter_needs_none():
    assert "nearby" not in DATA["place"]["furnace"]
    assert "table" not in DESCRIPTIONS["place furnace"]
    # And the game agrees: 4 stone, grass ahead, no table anywhere near, and the furnace is placed.
    env = make_env("crafter-v0")
    env.reset(seed=1)
    world, player = env._env._world, env._env._player
    assert "table" not in world.nearby(tuple(player.pos), 4)[0]
    target = tuple(int(p + f) for p, f in zip(player.pos, player.facing, strict=True))
    assert world[target] == ("grass", None)
    player.inventory["stone"] = 4
    _, _, _, _, info = env.step("place furnace")
    assert "place_furnace" in info["achievements"] and world[target][0] == "furnace"


def test_do_description_states_crafters_collect_requirements():
    text = DESCRIPTIONS["do"]
    stated: dict[str, dict[str, int]] = {}
    for subject, tool in re.findall(r"(\w+(?: and \w+)?) needs? an? (\w+ pickaxe)", text):
        for material in subject.split(" and "):
            stated[material] = {tool.replace(" ", "_"): 1}
    required = {m: r["require"] for m, r in DATA["collect"].items() if r["require"]}
    assert stated == required
    for material, rule in DATA["collect"].items():
        for item in rule["receive"]:
            assert item in text, f"collecting {material} gives {item}, which the text does not name"


def test_scaffold_notes_state_crafters_rules():
    notes = next(f for f in load_scaffold("crafter-v0").files if f.name == "notes.md").initial
    assert "table needs wood in inventory" in notes
    assert "wood" in DATA["place"]["table"]["uses"]
    assert "pickaxes need a nearby table" in notes
    assert all("table" in r["nearby"] for n, r in DATA["make"].items() if n.endswith("_pickaxe"))
    assert "furnace" not in notes.split("pickaxes")[0]  # no other rule is stated before the pickaxe one
