"""Environment speed: raw game steps/s against text-env steps/s, with and without resets, and reset times.

    .venv/bin/python benchmarks/envs.py [--steps N]

Prints one JSON line. Both sides of a pair play the same seeded random action indices (resets draw seeds
0, 1, 2...). "Raw" is what the text env wraps: ``crafter.Env`` as users run it (it renders its 64x64 image every
step), and for NetHack and MiniHack the NLE environment inside the text env, stepped by index with no text.
Target (issue 5): ``crafter_text_vs_raw_speedup`` (resets excluded) >= 3.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from automem.envs import list_envs, make_env


def measure(
    reset: Callable[[int], None], step: Callable[[int], bool], actions: list[int], cap: int | None = None
) -> dict[str, float]:
    """Play ``actions``; ``step`` returns True when the episode ended. Times steps and resets separately."""
    step_time = reset_time = 0.0
    resets = 0
    t0 = time.perf_counter()
    reset(0)
    reset_time += time.perf_counter() - t0
    in_episode = 0
    for a in actions:
        t0 = time.perf_counter()
        ended = step(a)
        step_time += time.perf_counter() - t0
        in_episode += 1
        if ended or (cap is not None and in_episode >= cap):
            resets += 1
            t0 = time.perf_counter()
            reset(resets)
            reset_time += time.perf_counter() - t0
            in_episode = 0
    n = len(actions)
    return {
        "steps_per_s": round(n / step_time, 1),
        "steps_per_s_with_resets": round(n / (step_time + reset_time), 1),
        "reset_s": round(reset_time / (resets + 1), 4),
        "episodes": resets + 1,
    }


def crafter_pair(n: int) -> dict[str, Any]:
    import crafter

    rng = np.random.default_rng(0)
    actions = [int(a) for a in rng.integers(0, 17, n)]
    raw = crafter.Env(seed=0)
    raw.reset()  # the first reset compiles numba's noise functions; keep that out of the figures
    text = make_env("crafter-v0")
    text.reset(seed=0)

    def raw_reset(seed: int) -> None:
        raw._seed, raw._episode = seed, 0
        raw.reset()

    def text_step(a: int) -> bool:
        _, _, terminated, truncated, _ = text.step(a)
        return terminated or truncated

    return {
        "raw": measure(raw_reset, lambda a: bool(raw.step(a)[2]), actions),
        "text": measure(lambda s: text.reset(seed=s) and None, text_step, actions),
    }


def nle_pair(env_id: str, n: int) -> dict[str, Any]:
    text = make_env(env_id)
    raw_holder = make_env(env_id)  # its NLE env is stepped directly, with no text
    raw = raw_holder._env
    raw_holder.remove_hooks()  # the raw side runs on NLE's own methods, not the text env's hooks
    indices = raw_holder._indices
    rng = np.random.default_rng(0)
    actions = [int(a) for a in rng.integers(0, len(indices), n)]

    def raw_reset(seed: int) -> None:
        raw_holder._seed_nle(seed)
        raw.reset()

    def raw_step(a: int) -> bool:
        _, _, done, truncated, _ = raw.step(indices[a])
        return bool(done or truncated)

    def text_step(a: int) -> bool:
        _, _, terminated, truncated, _ = text.step(a)
        return terminated or truncated

    cap = text.max_steps
    result = {
        "raw": measure(raw_reset, raw_step, actions, cap=cap),
        "text": measure(lambda s: text.reset(seed=s) and None, text_step, actions),
    }
    text.close()
    raw_holder.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per measurement (default 3000)")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    crafter_result = crafter_pair(args.steps)
    out["crafter-v0"] = crafter_result
    out["crafter_text_vs_raw_speedup"] = round(
        crafter_result["text"]["steps_per_s"] / crafter_result["raw"]["steps_per_s"], 2
    )
    out["crafter_text_vs_raw_speedup_with_resets"] = round(
        crafter_result["text"]["steps_per_s_with_resets"] / crafter_result["raw"]["steps_per_s_with_resets"],
        2,
    )
    out["crafter_text_reset_s"] = crafter_result["text"]["reset_s"]
    out["crafter_raw_reset_s"] = crafter_result["raw"]["reset_s"]
    for spec in list_envs():
        if spec.id.startswith(("nethack", "minihack")):
            out[spec.id] = nle_pair(spec.id, args.steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
