"""The part of BALROG's Crafter language wrapper that lists what is in view, vendored for side-by-side tests.

From balrog-ai/BALROG, ``balrog/environments/crafter/env.py`` at commit af7d1f1 (``describe_env``,
``describe_loc_old``, ``describe_loc_precise`` and the id-to-name table), trimmed to what the tests need:
``edge_only_items`` (which needs scipy, and is ``[]`` in BALROG's shipped config) is left out, and the id-to-name
table is built from ``crafter.Env``'s semantic view instead of BALROG's module-level dummy env. The listing logic
(slicing, centre, scan order, skip list, nearest-of-each-kind filter) is BALROG's, unchanged.

BALROG is released under the MIT License:

    MIT License

    Copyright (c) 2024-2024 BALROG Team

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np


def _semantic_view(env: Any) -> Any:
    from crafter import engine, objects

    return engine.SemanticView(
        env._world,
        [objects.Player, objects.Cow, objects.Zombie, objects.Skeleton, objects.Arrow, objects.Plant],
    )


def id_to_item(env: Any) -> list[Any]:
    """BALROG's table from semantic ids to names (``player``, ``cow``, ``plant``..., materials by name)."""
    sem = _semantic_view(env)
    names: list[Any] = [0] * (len(sem._mat_ids) + len(sem._obj_ids))
    for name, ind in list(env._world._mat_ids.items()) + list(sem._obj_ids.items()):
        names[ind] = name.__name__.lower() if isinstance(name, type) else name
    return names


def describe_loc_precise(ref: Any, p: Any) -> str:
    desc = []

    def distance_to_string(distance: int, direction: str) -> str:
        return f"{abs(distance)} step{'s' if abs(distance) > 1 else ''} {direction}"

    if ref[1] > p[1]:
        desc.append(distance_to_string(ref[1] - p[1], "north"))
    elif ref[1] < p[1]:
        desc.append(distance_to_string(ref[1] - p[1], "south"))
    if ref[0] > p[0]:
        desc.append(distance_to_string(ref[0] - p[0], "west"))
    elif ref[0] < p[0]:
        desc.append(distance_to_string(ref[0] - p[0], "east"))
    return " and ".join(desc) if desc else "at your location"


def describe_loc_old(ref: Any, p: Any) -> str:
    desc = []
    if ref[1] > p[1]:
        desc.append("north")
    elif ref[1] < p[1]:
        desc.append("south")
    if ref[0] > p[0]:
        desc.append("west")
    elif ref[0] < p[0]:
        desc.append("east")
    distance = abs(ref[1] - p[1]) + abs(ref[0] - p[0])
    return f"{distance} step{'s' if distance > 1 else ''} to your {'-'.join(desc)}"


def describe_env(
    info: dict[str, Any],
    names: list[Any],
    unique_items: bool = True,
    precise_location: bool = False,
    skip_items: tuple[str, ...] = (),
) -> str:
    """BALROG's "You see" list and "You face" line; ``info`` as BALROG's wrapper builds it from a step."""
    player_idx = names.index("player")
    assert info["semantic"][info["player_pos"][0], info["player_pos"][1]] == player_idx
    semantic = info["semantic"][
        info["player_pos"][0] - info["view"][0] // 2 : info["player_pos"][0] + info["view"][0] // 2 + 1,
        info["player_pos"][1] - info["view"][1] // 2 + 1 : info["player_pos"][1] + info["view"][1] // 2,
    ]
    center = np.array([info["view"][0] // 2, info["view"][1] // 2 - 1])
    result = ""
    describe_loc = describe_loc_precise if precise_location else describe_loc_old
    obj_info_list = []

    facing = info["player_facing"]
    max_x, max_y = semantic.shape
    target_x = center[0] + facing[0]
    target_y = center[1] + facing[1]
    if 0 <= target_x < max_x and 0 <= target_y < max_y:
        target_id = semantic[int(target_x), int(target_y)]
        target_item = names[target_id]
        if target_id in [names.index(o) for o in skip_items]:
            target_item = "nothing"
        obs = f"You face {target_item} at your front."
    else:
        obs = "You face nothing at your front."

    for i in range(semantic.shape[0]):
        for j in range(semantic.shape[1]):
            idx = semantic[i, j]
            if idx == player_idx:
                continue
            if idx in [names.index(o) for o in skip_items]:
                continue
            obj_info_list.append((names[idx], describe_loc(np.array([0, 0]), np.array([i, j]) - center)))

    def extract_numbers(s: str) -> list[int]:
        return [int(num) for num in re.findall(r"\d+", s)]

    if unique_items:
        closest: defaultdict[str, str] = defaultdict(str)
        for item_name, loc in obj_info_list:
            loc_dist = sum(extract_numbers(loc))
            current_dist = sum(extract_numbers(closest[item_name])) if closest[item_name] else float("inf")
            if loc_dist < current_dist:
                closest[item_name] = loc
        obj_info_list = list(closest.items())

    if len(obj_info_list) > 0:
        status_str = "You see:\n{}".format("\n".join(f"- {name} {loc}" for name, loc in obj_info_list))
    else:
        status_str = "You see nothing away from you."
    result += status_str + "\n\n"
    result += obs.strip()
    return result.strip()


def balrog_info(env: Any) -> dict[str, Any]:
    """The fields of BALROG's step ``info`` that ``describe_env`` reads, for a ``crafter.Env`` (or the text env's)."""
    return {
        "semantic": _semantic_view(env)(),
        "player_pos": env._player.pos,
        "player_facing": env._player.facing,
        "view": env._view,
    }
