"""The text a Crafter player reads: what is in view (nearest of each kind, with direction and distance), what the
player faces, the four vitals and the inventory, in the manner of BALROG's Crafter observations.

Two listings of what is in view:

- BALROG's (``crafter-balrog-v0``, ``balrog=True``): every material and creature in the 9x7 view, as BALROG's
  ``CrafterLanguageWrapper`` with its shipped config (``skip_items: []``, ``unique_items: True``) lists them: grass,
  sand and path included, the nearest cell of each kind, ties going to the westernmost, then northernmost cell,
  as BALROG's scan of the view picks them; plants are one kind (the nearest plant is named "ripe plant" when it
  is ripe, which BALROG does not say).
- The terser one (``crafter-v0``): grass, sand and path are left out of the "you see" list (they cover most of the
  view), which BALROG's shipped config does not do (its code only has that list, commented out); ripe and
  unripe plants are listed separately. Ties go to the northernmost, then westernmost cell.

Both differ from BALROG in one way on purpose: BALROG's view is empty ("You see nothing away from you") within 4
cells of the world's west edge or 3 of its north edge (a negative numpy slice); ours shows what is there.
Directions use the compass: north is up on Crafter's screen (decreasing y), west is left.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# Crafter's 22 achievements (crafter/data.yaml, sorted as there); a test checks this list against crafter's.
ACHIEVEMENTS: tuple[str, ...] = (
    "collect_coal",
    "collect_diamond",
    "collect_drink",
    "collect_iron",
    "collect_sapling",
    "collect_stone",
    "collect_wood",
    "defeat_skeleton",
    "defeat_zombie",
    "eat_cow",
    "eat_plant",
    "make_iron_pickaxe",
    "make_iron_sword",
    "make_stone_pickaxe",
    "make_stone_sword",
    "make_wood_pickaxe",
    "make_wood_sword",
    "place_furnace",
    "place_plant",
    "place_stone",
    "place_table",
    "wake_up",
)
VITALS = ("health", "food", "drink", "energy")
_UNLISTED = frozenset({"grass", "sand", "path"})
_FACING = {(0, -1): "north", (0, 1): "south", (-1, 0): "west", (1, 0): "east"}


@lru_cache(maxsize=8)
def _offsets(width: int, height: int, balrog: bool = False) -> tuple[tuple[int, int], ...]:
    """Offsets of the visible cells from the player, nearest first.

    Ties: north before south, then west before east; with ``balrog``, west before east, then north before south
    (BALROG scans the view column by column from the west and keeps the first nearest cell of each kind).
    """
    cells = [
        (dx, dy)
        for dx in range(-(width // 2), width // 2 + 1)
        for dy in range(-(height // 2), height // 2 + 1)
    ]
    cells.remove((0, 0))
    if balrog:
        return tuple(sorted(cells, key=lambda c: (abs(c[0]) + abs(c[1]), c[0], c[1])))
    return tuple(sorted(cells, key=lambda c: (abs(c[0]) + abs(c[1]), c[1], c[0])))


def where(dx: int, dy: int) -> str:
    """An offset in words, e.g. ``2 steps north and 1 step west``."""
    parts = []
    if dy:
        parts.append(f"{abs(dy)} step{'s' if abs(dy) > 1 else ''} {'north' if dy < 0 else 'south'}")
    if dx:
        parts.append(f"{abs(dx)} step{'s' if abs(dx) > 1 else ''} {'west' if dx < 0 else 'east'}")
    return " and ".join(parts) if parts else "where you stand"


def object_name(obj: Any) -> str:
    """A creature or plant in words (``cow``, ``zombie``, ``ripe plant``...)."""
    name = type(obj).__name__.lower()
    if name == "plant" and getattr(obj, "ripe", False):
        return "ripe plant"
    return name


def nearest_things(
    world: Any, pos: tuple[int, int], grid: tuple[int, int], balrog: bool = False
) -> list[tuple[str, int, int]]:
    """``(name, dx, dy)`` of the nearest visible thing of each kind, nearest first; creatures hide the ground.

    Without ``balrog`` grass, sand and path are left out; with it every kind is listed and cells are chosen as
    BALROG chooses them (see the module's docstring).
    """
    width, height = int(grid[0]), int(grid[1])
    x, y = pos
    area_w, area_h = world.area
    x0, y0 = x - width // 2, y - height // 2
    # One slice and tolist() per map: indexing numpy cell by cell costs several times more.
    sx0, sy0 = max(x0, 0), max(y0, 0)
    mats = world._mat_map[sx0 : x0 + width, sy0 : y0 + height].tolist()
    objs = world._obj_map[sx0 : x0 + width, sy0 : y0 + height].tolist()
    objects, names = world._objects, world._mat_names
    seen: set[str] = set()
    found: list[tuple[str, int, int]] = []
    for dx, dy in _offsets(width, height, balrog):
        cx, cy = x + dx, y + dy
        if not (0 <= cx < area_w and 0 <= cy < area_h):
            continue
        index = objs[cx - sx0][cy - sy0]
        if index:
            obj = objects[index]
            name = object_name(obj)
            kind = type(obj).__name__.lower() if balrog else name  # BALROG: a plant is a plant, ripe or not
        else:
            name = kind = names[mats[cx - sx0][cy - sy0]]
        if kind in seen or (not balrog and kind in _UNLISTED):
            continue
        seen.add(kind)
        found.append((name, dx, dy))
    return found


def describe(
    world: Any,
    player: Any,
    grid: Any,
    step: int,
    max_steps: int,
    daylight: float,
    balrog: bool = False,
) -> str:
    """The observation text for the current state of ``world`` as ``player`` sees it (``balrog``: BALROG's list)."""
    x, y = int(player.pos[0]), int(player.pos[1])
    lines: list[str] = []
    if player.health <= 0:
        lines.append("You died.")
    elif player.sleeping:
        lines.append("You are asleep and will wake up when your energy is full.")
    things = nearest_things(world, (x, y), (int(grid[0]), int(grid[1])), balrog)
    if things:
        lines.append("You see:")
        lines.extend(f"- {name} {where(dx, dy)}" for name, dx, dy in things)
    else:
        lines.append(
            "You see nothing around you." if balrog else "You see only grass, sand and path around you."
        )
    fx, fy = int(player.facing[0]), int(player.facing[1])
    material, obj = world[(x + fx, y + fy)]
    facing = object_name(obj) if obj is not None else (material or "the edge of the world")
    lines.append(f"You face {facing} ({_FACING.get((fx, fy), 'ahead')} of you).")
    inventory = player.inventory
    lines.append("Status: " + ", ".join(f"{v} {inventory[v]}/9" for v in VITALS) + ".")
    items = [f"{k.replace('_', ' ')}: {n}" for k, n in inventory.items() if k not in VITALS and n > 0]
    lines.append("Inventory: " + (", ".join(items) if items else "empty") + ".")
    lines.append(f"It is {'day' if daylight >= 0.5 else 'night'}; step {step} of {max_steps}.")
    return "\n".join(lines)
