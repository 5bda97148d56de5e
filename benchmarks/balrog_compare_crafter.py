"""Compare ``crafter-balrog-v0`` with BALROG's Crafter wrapper on shared seeds and actions (not run by tests).

Run: ``.venv/bin/python benchmarks/balrog_compare_crafter.py [seeds...]``. The reference is ``crafter.Env``
driven as BALROG's ``CrafterLanguageWrapper`` drives it (256x256 images, a noop step at reset, a second render
per step) and listed by BALROG's ``describe_env`` (vendored in ``tests/support/balrog_crafter.py``). For each seed
it prints the steps compared, the steps where the lists differ, the night steps, the steps where sand or path was
listed, and the steps BALROG was blind (near the west/north edge). It also replays the same actions in
``crafter.Env``'s own game (``crafter-v0``'s) to show where that game leaves BALROG's.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import crafter  # noqa: E402

from automem.envs import make_env  # noqa: E402
from automem.envs.crafter import make_deterministic  # noqa: E402
from automem.envs.crafter_text import nearest_things  # noqa: E402
from tests.support import balrog_crafter as ref_text  # noqa: E402


def ours(env) -> set[str]:  # type: ignore[no-untyped-def]
    e = env._env
    pos = (int(e._player.pos[0]), int(e._player.pos[1]))
    return {
        f"- {'plant' if n == 'ripe plant' else n} {ref_text.describe_loc_old((0, 0), (dx, dy))}"
        for n, dx, dy in nearest_things(e._world, pos, e.text_grid, balrog=True)
    }


def compare(seed: int, steps: int = 400) -> None:
    ref = crafter.Env(seed=seed, size=(256, 256))
    make_deterministic(ref)
    ref.reset()
    ref.step(0)
    ref.render()
    names = ref_text.id_to_item(ref)
    env, plain = make_env("crafter-balrog-v0"), make_env("crafter-v0")
    env.reset(seed=seed)
    plain.reset(seed=seed)
    plain.step("noop")  # BALROG's hidden first noop, so positions line up
    rng = random.Random(seed)
    compared = differ = night = sand_path = blind = 0
    plain_left = None
    plain_done = False
    for step in range(steps):
        text = ref_text.describe_env(ref_text.balrog_info(ref), names)
        listed = {ln for ln in text.splitlines() if ln.startswith("- ")}
        px, py = (int(v) for v in ref._player.pos)
        if px >= 4 and py >= 3:
            compared += 1
            differ += ours(env) != listed
            sand_path += any(" sand " in ln or " path " in ln for ln in listed)
        else:
            blind += "nothing away" in text
        action = rng.choice([0, 0, 1, 2, 3, 4, 5, 5, 6, *range(7, 17)])
        _, _, done, ref_info = ref.step(action)
        ref.render()
        night += ref._world.daylight < 0.5
        _, _, term, _, info = env.step(action)
        if not plain_done:
            _, _, plain_done, _, plain_info = plain.step(action)
            if plain_left is None and (plain_info["player_pos"], plain_info["inventory"], plain_done) != (
                info["player_pos"],
                info["inventory"],
                term,
            ):
                plain_left = step + 1
        if done or term:
            break
    print(
        f"seed {seed}: {step + 1} steps, {compared} compared, {differ} differ, {night} at night, "
        f"{sand_path} with sand/path, {blind} BALROG-blind; crafter.Env's own game left BALROG's at step "
        f"{plain_left if plain_left is not None else '-'}"
    )


if __name__ == "__main__":
    for s in [int(a) for a in sys.argv[1:]] or [0, 1, 2, 3, 4]:
        compare(s)
