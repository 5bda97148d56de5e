"""NetHack's raw observation in words, for NetHack and MiniHack.

The observation an agent reads has five parts, as in BALROG's NetHack text: the message; what is around the
player (the eight neighbouring squares, then monsters, objects and dungeon features in view, each with direction
and distance); the status in words; the inventory with its letters; and the screen's map rows. Everything here is
computed from NLE's arrays (``glyphs``, ``blstats``, ``message``, ``inv_letters``, ``inv_strs``, ``tty_chars``);
NLE 1.3.0 has no language wrapper of its own.

Coordinates: ``x`` is the map column (east is +x), ``y`` the map row (south is +y).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any

import numpy as np

# Kinds of glyph, in the order the "you see" list shows them.
MONSTER, OBJECT, FEATURE, TERRAIN, SKIP = 0, 1, 2, 3, 4
# Which kinds keep their place first when a big level does not fit the list: monsters, then features (the
# stairs a task leads to, doors, fountains), then objects (a shop can hold dozens).
_PRIORITY = {MONSTER: 0, FEATURE: 1, OBJECT: 2, TERRAIN: 3}
_KIND_WORD = {MONSTER: "monsters", OBJECT: "objects", FEATURE: "features", TERRAIN: "walls or corridors"}

_SKIPPED_CMAP = {0, 19, 20}  # unexplored stone, lit floor, dark floor: everywhere and uninformative
# Walls, iron bars, trees, corridors: they fill the map (Boxoban's walls are iron bars), so only the nearest of
# each is named; the map rows show the rest.
_TERRAIN_CMAP = set(range(1, 12)) | {17, 18, 21, 22}
_HUNGER = ["satiated", "not hungry", "hungry", "weak", "fainting", "fainted", "starved"]
_ENCUMBRANCE = ["unencumbered", "burdened", "stressed", "strained", "overtaxed", "overloaded"]
_ALIGNMENT = {-1: "chaotic", 0: "neutral", 1: "lawful"}
_CONDITIONS = [  # (mask name in nle.nethack, word)
    ("BL_MASK_STONE", "turning to stone"),
    ("BL_MASK_SLIME", "turning to slime"),
    ("BL_MASK_STRNGL", "strangled"),
    ("BL_MASK_FOODPOIS", "food poisoned"),
    ("BL_MASK_TERMILL", "terminally ill"),
    ("BL_MASK_BLIND", "blind"),
    ("BL_MASK_DEAF", "deaf"),
    ("BL_MASK_STUN", "stunned"),
    ("BL_MASK_CONF", "confused"),
    ("BL_MASK_HALLU", "hallucinating"),
    ("BL_MASK_LEV", "levitating"),
    ("BL_MASK_FLY", "flying"),
    ("BL_MASK_RIDE", "riding"),
]
# Neighbours in reading order around the compass, starting north.
NEIGHBOURS = [
    ("north", 0, -1),
    ("northeast", 1, -1),
    ("east", 1, 0),
    ("southeast", 1, 1),
    ("south", 0, 1),
    ("southwest", -1, 1),
    ("west", -1, 0),
    ("northwest", -1, -1),
]
_PAIRS = ("gloves", "boots", "shoes")  # NetHack says "pair of" for gloves and boots (is_gloves, is_boots)


def _object_name(nh: Any, glyph: int) -> str:
    """An object glyph in the game's own words for an unidentified object (NetHack's ``xname``).

    An object glyph stands for an appearance, not an identity: NetHack's shuffled descriptions ("ruby potion")
    are drawn with the glyph of the object whose unshuffled description they are, so ``OBJ_DESCR`` of the glyph's
    object is what the player sees, and ``OBJ_NAME`` may well be another object's name (never shown here).
    """
    obj = nh.objclass(nh.glyph_to_obj(glyph))
    name, descr = nh.OBJ_NAME(obj), nh.OBJ_DESCR(obj)
    klass = ord(obj.oc_class)
    if descr:
        if klass == nh.SCROLL_CLASS:
            # Magic scrolls are "labeled"; blank paper is the one scroll without magic in NLE's build.
            return f"{descr} scroll" if descr == "unlabeled" else f"scroll labeled {descr}"
        if klass == nh.SPBOOK_CLASS:
            return "paperback book" if descr == "paperback" else f"{descr} spellbook"
        if klass == nh.AMULET_CLASS:
            return descr if descr == "Amulet of Yendor" else f"{descr} amulet"
        if klass == nh.GEM_CLASS:
            # Gray stones are mineral ("gray stone"), every other described gem is a "gem"; NLE's objclass
            # binding has no oc_material to ask.
            return f"{descr} {'stone' if descr == 'gray' else 'gem'}"
        word = {nh.POTION_CLASS: "potion", nh.WAND_CLASS: "wand", nh.RING_CLASS: "ring"}.get(klass)
        if word:
            return f"{descr} {word}"
    # Weapons, armor and tools show their appearance until identified (a "crude dagger"), else their name.
    text = descr or name or "strange object"
    if klass == nh.ARMOR_CLASS and text.endswith(_PAIRS):  # no oc_armcat in NLE's objclass binding either
        return f"pair of {text}"
    return text


@lru_cache(maxsize=1)
def glyph_table() -> tuple[list[str], np.ndarray]:
    """For every glyph: its name in words and its kind (MONSTER, OBJECT, FEATURE, TERRAIN or SKIP)."""
    import nle.nethack as nh

    names: list[str] = []
    kinds = np.full(nh.MAX_GLYPH + 1, SKIP, dtype=np.int8)
    for g in range(nh.MAX_GLYPH):
        kind = FEATURE
        if nh.GLYPH_PET_OFF <= g < nh.GLYPH_INVIS_OFF:
            name, kind = f"tame {nh.permonst(nh.glyph_to_mon(g)).mname}", MONSTER
        elif g == nh.GLYPH_INVIS_OFF:
            name, kind = "unseen monster (remembered)", MONSTER
        elif nh.glyph_is_monster(g):
            name, kind = nh.permonst(nh.glyph_to_mon(g)).mname, MONSTER
        elif nh.GLYPH_BODY_OFF <= g < nh.GLYPH_RIDDEN_OFF:
            name, kind = f"{nh.permonst(g - nh.GLYPH_BODY_OFF).mname} corpse", OBJECT
        elif nh.GLYPH_STATUE_OFF <= g < nh.MAX_GLYPH:
            name, kind = f"statue of a {nh.permonst(g - nh.GLYPH_STATUE_OFF).mname}", OBJECT
        elif nh.GLYPH_OBJ_OFF <= g < nh.GLYPH_CMAP_OFF:
            name, kind = _object_name(nh, g), OBJECT
        elif nh.GLYPH_CMAP_OFF <= g < nh.GLYPH_EXPLODE_OFF:
            cmap = g - nh.GLYPH_CMAP_OFF
            name = nh.symdef.from_idx(cmap).explanation or "effect"
            if cmap == 0:
                name = "unexplored"
            elif cmap == 19:
                name = "floor"
            elif cmap == 20:
                name = "dark floor"
            if cmap in _SKIPPED_CMAP:
                kind = SKIP
            elif cmap in _TERRAIN_CMAP:
                kind = TERRAIN
        elif nh.GLYPH_SWALLOW_OFF <= g < nh.GLYPH_WARNING_OFF:
            name, kind = "the inside of a monster that swallowed you", TERRAIN
        elif nh.GLYPH_WARNING_OFF <= g < nh.GLYPH_STATUE_OFF:
            name, kind = f"warning of an unseen monster (level {g - nh.GLYPH_WARNING_OFF})", MONSTER
        else:
            name = "magical effect"
        names.append(name)
        kinds[g] = kind
    names.append("nothing")  # NO_GLYPH
    return names, kinds


def where(dx: int, dy: int) -> str:
    """An offset in words: ``3 steps northeast``, ``2 steps north and 5 steps east``."""
    ns = "north" if dy < 0 else "south"
    ew = "west" if dx < 0 else "east"
    ax, ay = abs(dx), abs(dy)

    def steps(n: int) -> str:
        return f"{n} step{'s' if n != 1 else ''}"

    if ax == 0 and ay == 0:
        return "here"
    if ax == 0:
        return f"{steps(ay)} {ns}"
    if ay == 0:
        return f"{steps(ax)} {ew}"
    if ax == ay:
        return f"{steps(ax)} {ns}{ew}"
    return f"{steps(ay)} {ns} and {steps(ax)} {ew}"


def describe_surroundings(
    glyphs: np.ndarray, x: int, y: int, per_name: int = 8, max_lines: int = 40
) -> list[str]:
    """Lines naming the eight neighbours, then what is in view by kind and distance (nearest first).

    Every monster is listed, and every object and feature up to ``per_name`` of each name (Boxoban's four
    boulders and four fountains all show); of walls, corridors, iron bars and trees only the nearest of each
    (they fill the map, and the map rows show them). The list is bounded on big levels, never silently: past
    ``per_name``, a line counts the rest of that name; past ``max_lines`` entries, every name keeps its nearest
    one first, in the order monsters, features (stairs, doors, fountains), objects, and a last line counts by kind
    the names left out altogether.
    """
    names, kinds = glyph_table()
    rows, cols = glyphs.shape
    neighbours = []
    for word, dx, dy in NEIGHBOURS:
        cx, cy = x + dx, y + dy
        name = names[int(glyphs[cy, cx])] if 0 <= cx < cols and 0 <= cy < rows else "edge of the map"
        neighbours.append(f"{word} {name}")
    lines = ["Next to you: " + "; ".join(neighbours) + "."]

    k = kinds[glyphs]
    if 0 <= y < rows and 0 <= x < cols:
        k[y, x] = SKIP  # the player
    ys, xs = np.nonzero(k != SKIP)
    if not len(xs):
        lines.append("You see nothing else of note.")
        return lines
    dist = np.maximum(np.abs(xs - x), np.abs(ys - y))  # moves needed, diagonals allowed
    order = np.lexsort((xs, ys, dist, k[ys, xs]))
    # The squares in that order (kind, distance, row, column); from here on a square is its place in it.
    sx, sy = xs[order], ys[order]
    sx_list, sy_list = sx.tolist(), sy.tolist()
    kind_list = k[sy, sx].tolist()
    square_names = [names[g] for g in glyphs[sy, sx].tolist()]
    # Squares by name, nearest first; names in order of kind, then of their nearest square.
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(square_names):
        groups.setdefault(name, []).append(j)
    kind_of = {name: kind_list[m[0]] for name, m in groups.items()}
    cap = {
        name: len(m) if kind_of[name] == MONSTER else 1 if kind_of[name] == TERRAIN else per_name
        for name, m in groups.items()
    }
    # The budget goes to the nearest square of every name first, then to the others.
    by_priority = sorted(groups, key=lambda name: _PRIORITY[kind_of[name]])  # stable: nearest first within
    shown = dict.fromkeys(groups, 0)
    budget = max_lines
    for name in by_priority:
        if budget:
            shown[name], budget = 1, budget - 1
    for name in by_priority:
        extra = min(budget, min(cap[name], len(groups[name])) - shown[name]) if shown[name] else 0
        shown[name] += extra
        budget -= extra
    chosen = sorted(j for name, m in groups.items() for j in m[: shown[name]])
    lines.append("You see:")
    lines.extend(f"- {square_names[j]}: {where(sx_list[j] - x, sy_list[j] - y)}" for j in chosen)
    for name, m in groups.items():
        if shown[name] and len(m) > shown[name] and kind_of[name] != TERRAIN:
            lines.append(f"- {name}: {len(m) - shown[name]} more, farther away")
    # Names left out, counted by kind (a Counter keeps the kinds in the order first seen).
    left_out = Counter(_KIND_WORD[kind_of[name]] for name in by_priority if not shown[name])
    if left_out:
        counts = ", ".join(f"{n} kinds of {w}" for w, n in left_out.items())
        lines.append(f"- not listed, farther away: {counts} (see the map)")
    return lines


def _strength(str125: int) -> str:
    if str125 <= 18:
        return str(str125)
    if str125 <= 117:
        return f"18/{str125 - 18:02d}"
    if str125 == 118:
        return "18/**"
    return str(str125 - 100)


def describe_status(blstats: np.ndarray) -> str:
    """The bottom lines of the screen, in words."""
    import nle.nethack as nh

    b = [int(v) for v in blstats]
    hunger = _HUNGER[b[nh.NLE_BL_HUNGER]] if 0 <= b[nh.NLE_BL_HUNGER] < len(_HUNGER) else "unknown"
    cap = _ENCUMBRANCE[b[nh.NLE_BL_CAP]] if 0 <= b[nh.NLE_BL_CAP] < len(_ENCUMBRANCE) else "unknown"
    conditions = [word for mask, word in _CONDITIONS if b[nh.NLE_BL_CONDITION] & getattr(nh, mask, 0)]
    return (
        f"Status: HP {b[nh.NLE_BL_HP]}/{b[nh.NLE_BL_HPMAX]}, Pw {b[nh.NLE_BL_ENE]}/{b[nh.NLE_BL_ENEMAX]}, "
        f"AC {b[nh.NLE_BL_AC]}, experience level {b[nh.NLE_BL_XP]} ({b[nh.NLE_BL_EXP]} points), "
        f"dungeon level {b[nh.NLE_BL_DEPTH]}, gold {b[nh.NLE_BL_GOLD]}, turn {b[nh.NLE_BL_TIME]}, {hunger}, "
        f"{cap}, {_ALIGNMENT.get(b[nh.NLE_BL_ALIGN], 'unaligned')}. "
        f"St {_strength(b[nh.NLE_BL_STR125])} Dx {b[nh.NLE_BL_DEX]} Co {b[nh.NLE_BL_CON]} "
        f"In {b[nh.NLE_BL_INT]} Wi {b[nh.NLE_BL_WIS]} Ch {b[nh.NLE_BL_CHA]}. "
        f"Conditions: {', '.join(conditions) if conditions else 'none'}. "
        f"Position: x={b[nh.NLE_BL_X]}, y={b[nh.NLE_BL_Y]}."
    )


def inventory_lines(inv_letters: np.ndarray, inv_strs: np.ndarray) -> list[str]:
    """``a: a +1 long sword (weapon in hand)``, one line per item."""
    lines = []
    for letter, raw in zip(inv_letters.tolist(), inv_strs, strict=False):
        if letter == 0:
            break
        lines.append(f"{chr(letter)}: {decode(raw)}")
    return lines


def decode(raw: np.ndarray | bytes) -> str:
    """A NUL-terminated byte array (or its bytes) as text."""
    data = bytes(raw)
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("latin-1").strip()


def _trim(rows: list[str]) -> list[str]:
    rows = [r.rstrip() for r in rows]
    while rows and not rows[-1]:
        rows.pop()
    while rows and not rows[0]:
        rows.pop(0)
    return rows


def screen_rows(tty_chars: np.ndarray, first: int = 1, last: int = 22) -> list[str]:
    """Rows ``first..last-1`` of the terminal, right-trimmed, without trailing blank rows."""
    rows = [bytes(r).decode("latin-1").rstrip() for r in tty_chars[first:last]]
    while rows and not rows[-1]:
        rows.pop()
    while rows and not rows[0]:
        rows.pop(0)
    return rows


_MENU_END = re.compile(r"\((?:end|\d+ of \d+)\)$")  # tty's last row of a menu page: "(end)", "(1 of 2)"
_MENU_ENTRY = re.compile(r"^([a-zA-Z$#]) ([-+#]) (.*)$")  # "a - a +1 long sword", "b + ..." (selected)
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ$#"  # what NetHack names items and entries by


def menu_page(tty_chars: np.ndarray) -> tuple[list[str], str]:
    """The menu page on the screen: its rows from the top (on the first page, the title first), and its page
    marker (``(end)``, ``(1 of 2)``; ``""`` when none is found).

    tty draws a menu from a left column to the right (over the map) or, when it is wide, over the whole screen;
    the page marker starts at that column (map squares may show left of it), and the rows keep their
    indentation from it.
    """
    rows = [bytes(r).decode("latin-1").rstrip() for r in tty_chars]
    found = next(((i, m) for i, r in enumerate(rows) if (m := _MENU_END.search(r))), None)
    if found is None:
        indent = len(rows[0]) - len(rows[0].lstrip())
        marker = ""
    else:
        end, match = found
        indent, marker = match.start(), match.group(0)
        rows = rows[:end]
    kept = [r[indent:] for r in rows if r[indent:].strip()]
    margin = min((len(r) - len(r.lstrip()) for r in kept), default=0)
    return [r[margin:] for r in kept], marker


def menu_letters(rows: list[str]) -> list[str]:
    """The letters that select a menu page's entries (``a - ...``), in screen order."""
    out = []
    for row in rows:
        found = _MENU_ENTRY.match(row.strip())
        if found and found.group(1) not in out:
            out.append(found.group(1))
    return out


def crop_map(rows: list[str], x: int, y: int, half_width: int, half_height: int) -> tuple[list[str], str]:
    """Map rows (``rows[y]`` is map row ``y``) cut to a window around the player, and the window in words."""
    top, bottom = max(0, y - half_height), min(len(rows), y + half_height + 1)
    left, right = max(0, x - half_width), x + half_width + 1
    window = [r[left:right].rstrip() for r in rows[top:bottom]]
    return window, f"columns x={left}-{right - 1}, rows y={top}-{bottom - 1}"


def _status_short(blstats: np.ndarray) -> str:
    import nle.nethack as nh

    b = [int(v) for v in blstats]
    hunger = _HUNGER[b[nh.NLE_BL_HUNGER]] if 0 <= b[nh.NLE_BL_HUNGER] < len(_HUNGER) else "unknown"
    return (
        f"Status: HP {b[nh.NLE_BL_HP]}/{b[nh.NLE_BL_HPMAX]}, AC {b[nh.NLE_BL_AC]}, "
        f"experience level {b[nh.NLE_BL_XP]}, dungeon level {b[nh.NLE_BL_DEPTH]}, turn {b[nh.NLE_BL_TIME]}, "
        f"{hunger}. Position: x={b[nh.NLE_BL_X]}, y={b[nh.NLE_BL_Y]}. (shortened to fit)"
    )


_MAP_WINDOWS = [(30, 8), (20, 6), (12, 4), (8, 3), (5, 2)]  # half width, half height, widest first
_SURROUNDING_LINES = [20, 10, 5, 0]


def render(
    message: str,
    glyphs: np.ndarray,
    blstats: np.ndarray,
    inv_letters: np.ndarray,
    inv_strs: np.ndarray,
    tty_chars: np.ndarray,
    prompt: list[str] | None = None,
    map_rows: list[str] | None = None,
    max_chars: int | None = None,
) -> str:
    """The full observation text: the message (and ``prompt``: an open menu, question or position selection),
    what is around, the status, the inventory and the map (``map_rows``, one per map row, else the screen's
    rows 1-21; a menu drawn over the map is not part of it).

    With ``max_chars``, a text that does not fit is shortened, least useful part first, each step saying what
    it left out: the map is cut to a window around the player (narrower and narrower), then left out; then the
    inventory keeps only its letters; then the status its main numbers; then the "you see" list shrinks. The
    message and the prompt are never shortened while anything else can be; past that, the end is cut. The
    parts keep their order (message first, map last), so a reader that cuts the end cuts the map first too.
    """
    import nle.nethack as nh

    x, y = int(blstats[nh.NLE_BL_X]), int(blstats[nh.NLE_BL_Y])
    head = [f"Message: {message if message else '(none)'}"] + list(prompt or [])
    rows = screen_rows(tty_chars) if map_rows is None else _trim(map_rows)
    inventory = inventory_lines(inv_letters, inv_strs)

    def text(lines_seen: int = 40, status: str = "", inv: list[str] | None = None, map_part=None) -> str:
        parts = head + [""] + describe_surroundings(glyphs, x, y, max_lines=lines_seen)
        parts += ["", status or describe_status(blstats), "", "Inventory:"]
        parts += (inventory if inv is None else inv) or ["(empty)"]
        parts += ["", *(map_part if map_part is not None else ["Map:", *rows])]
        return "\n".join(parts)

    full = text()
    if max_chars is None or len(full) <= max_chars:
        return full
    # The map rows as map coordinates: full-screen rows 1-21 are map rows 0-20.
    grid = [bytes(r).decode("latin-1").rstrip() for r in tty_chars[1:22]] if map_rows is None else map_rows
    candidates: list[dict] = []
    for hw, hh in _MAP_WINDOWS:
        window, where_words = crop_map(grid, x, y, hw, hh)
        candidates.append({"map_part": [f"Map (cut to the part around you, {where_words}):", *window]})
    no_map = ["Map: left out to fit the observation budget."]
    candidates.append({"map_part": no_map})
    letters = "".join(line[0] for line in inventory)
    short_inv = [f"{len(inventory)} items, letters {letters} (names left out to fit)"] if inventory else None
    short_status = _status_short(blstats)
    candidates.append({"map_part": no_map, "inv": short_inv})
    candidates.append({"map_part": no_map, "inv": short_inv, "status": short_status})
    for n in _SURROUNDING_LINES:
        candidates.append({"map_part": no_map, "inv": short_inv, "status": short_status, "lines_seen": n})
    last = full
    for c in candidates:
        last = text(**c)
        if len(last) <= max_chars:
            return last
    marker = "\n[observation cut]"
    return last[: max(0, max_chars - len(marker))] + marker
