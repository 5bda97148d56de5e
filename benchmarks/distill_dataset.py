"""Loop 2 dataset build benchmark: seconds to build a dataset from ~10k memory turns on one core.

    .venv/bin/python benchmarks/distill_dataset.py                  # 10,000 memory turns (about a minute)
    .venv/bin/python benchmarks/distill_dataset.py --turns 2000 --keep /tmp/store

Prints one JSON line: ``dataset_build_s_per_10k_turns`` (``automem.distill.build_dataset`` with the
``utility+outcome`` selection: reading the committed turns, selection with provenance, post-processing, dedupe
and writing the dataset; best of two builds, wall clock, scaled to 10k turns; ``build_s`` and ``build_cpu_s``
each build's wall and CPU seconds, which differ on a busy machine), ``turns`` (memory turns read) and ``kept``
(the dataset's rows). The process is pinned to one core and Arrow to one thread while it is timed. Target: at
most 10 s per 10k turns.

The store is written through the trajectory writer with the memory operations run by the real memory code, as a
live run stores them: episodes of 100 steps, one LOG turn and one PLAN turn a step, five episodes a seed with
varied progression. LOG turns append facts (some repeated: redundant writes; some reading a missing file: a failed
operation; some wrapped in prose and a code fence); PLAN turns SEARCH, READ or TAIL the notes. Each prompt is an
observation and the last few notes, about 1.5 kB, as the agent sends.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa  # noqa: E402

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent  # noqa: E402
from automem.distill import DatasetConfig, build_dataset  # noqa: E402
from automem.memory.ops import REGISTRY  # noqa: E402
from automem.memory.store import MemoryStore  # noqa: E402
from automem.memory.turn import run_text  # noqa: E402
from automem.trajectory import Storage  # noqa: E402
from automem.trajectory.writer import EpisodeWriter  # noqa: E402

STEPS = 100
EPISODES_PER_SEED = 5
THINGS = [
    "tree",
    "stone",
    "water",
    "cow",
    "zombie",
    "table",
    "sapling",
    "coal",
    "iron",
    "lava",
    "skeleton",
    "bush",
]
SYSTEM = "You are an agent playing a text game. Memory operations: " + ", ".join(REGISTRY)


def _log_text(rng: random.Random, t: int, facts: list[str]) -> str:
    roll = rng.random()
    if facts and roll < 0.08:
        return f"APPEND notes.md {rng.choice(facts)}"  # a redundant write
    fact = f"{rng.choice(THINGS)} at {rng.randint(0, 63)},{rng.randint(0, 63)} seen at step {t}"
    facts.append(fact)
    if roll < 0.13:
        return f"READ missing.md\nAPPEND notes.md {fact}"  # a failed operation
    if roll < 0.25:
        return f"I will note what I saw.\n```\nAPPEND notes.md {fact}\n```\nDONE\nThen I move on."
    if roll < 0.35:
        return f"APPEND notes.md {fact}\nUPSERT goals.md next: find {rng.choice(THINGS)}"
    return f"APPEND notes.md {fact}"


def _plan_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return f"SEARCH {rng.choice(THINGS)}"
    if roll < 0.8:
        return "TAIL notes.md 5"
    return "READ notes.md"


def _turn(episode: str, t: int, phase: str, text: str, results: list, prompt: str, **kw: Any) -> TurnEvent:
    return TurnEvent(
        episode_id=episode,
        step=t,
        phase=phase,
        turn=0,
        model="m",
        prompt_tokens=len(prompt) // 4,
        prompt_tokens_est=len(prompt) // 4,
        prefix_hash="h",
        completion=text,
        completion_tokens=max(1, len(text) // 4),
        latency_s=0.1,
        constraint=None,
        results=results,
        messages=[{"role": "user", "content": prompt}],
        **kw,
    )


def write_episode(st: Storage, episode: str, seed: int, progression: float, rng: random.Random) -> int:
    """One committed episode of ``STEPS`` steps; returns its memory turns."""
    meta = {"env_id": "crafter-v0", "seed": seed, "scaffold_id": "s0", "scaffold_content_id": "c0"}
    writer = EpisodeWriter(st, "bench", episode, 1, {**meta, "memory_model": "m", "action_model": "m"})
    store = MemoryStore.in_memory()
    store.on_record = writer.on_event
    facts: list[str] = []
    turns = op_errors = 0
    for t in range(STEPS):
        view = "\n".join(
            f"  {rng.choice(THINGS)} {rng.randint(1, 9)} steps {rng.choice('NSEW')}" for _ in range(40)
        )
        notes = "\n".join(facts[-8:])
        for phase, text in (("log", _log_text(rng, t, facts)), ("plan", _plan_text(rng))):
            prompt = f"Step {t}, {phase.upper()} phase.\nYou see:\n{view}\nRecent notes:\n{notes}\nWrite operations."
            results = run_text(store, text, step=t, phase=phase, turn=0, read_only=phase == "plan")
            op_errors += sum(not r.ok for r in results)
            writer.on_event(_turn(episode, t, phase, text, [r.to_json() for r in results], prompt))
            turns += 1
        writer.on_event(_turn(episode, t, "action", "noop", [], "act", action="noop", action_valid=True))
        writer.on_event(
            StepEvent(
                episode_id=episode,
                step=t,
                observation=view,
                action="noop",
                action_index=0,
                action_text="noop",
                action_valid=True,
                reward=0.0,
                terminated=t == STEPS - 1,
                truncated=False,
                progression=progression * (t + 1) / STEPS,
            )
        )
    end = EpisodeEnd(
        episode_id=episode,
        env_id=meta["env_id"],
        seed=seed,
        steps=STEPS,
        episode_return=0.0,
        progression=progression,
        terminated=True,
        truncated=False,
        invalid_actions=0,
        turns=3 * STEPS,
        prompt_tokens=0,
        completion_tokens=0,
        llm_seconds=0.0,
        env_seconds=0.0,
        wall_seconds=1.0,
        op_errors=op_errors,
        memory_files={n: store.backend.read(n) for n in sorted(store.index)},
    )
    writer.commit(end, SYSTEM)
    return turns


def make_store(root: str, n_turns: int, seed: int = 0) -> int:
    """A store of about ``n_turns`` memory turns (whole episodes); returns the exact count."""
    rng = random.Random(seed)
    st = Storage(root)
    episodes = max(1, round(n_turns / (2 * STEPS)))
    return sum(
        write_episode(st, f"ep-{i:04d}", i // EPISODES_PER_SEED, rng.uniform(0.0, 1.0), rng)
        for i in range(episodes)
    )


def _one_core() -> Any:
    """Pin the process to one core and Arrow to one thread; returns what restores them."""
    cpus = os.sched_getaffinity(0)
    threads = pa.cpu_count()
    os.sched_setaffinity(0, {min(cpus)})
    pa.set_cpu_count(1)

    def restore() -> None:
        os.sched_setaffinity(0, cpus)
        pa.set_cpu_count(threads)

    return restore


def dataset_build_figures(n_turns: int = 10_000, keep: str | None = None) -> dict[str, Any]:
    """Build a ``utility+outcome`` dataset from a synthetic store of about ``n_turns`` memory turns, timed on one
    core (store creation not timed).

    Args:
        n_turns: memory turns in the store (rounded to whole episodes of 200).
        keep: write the store (and datasets) here and leave them; default a temporary folder, removed.
    """
    work = keep or tempfile.mkdtemp(prefix="automem-bench-distill-")
    try:
        store = os.path.join(work, "store")
        turns = make_store(store, n_turns)
        config = DatasetConfig(source=store, strategy="utility+outcome")
        restore = _one_core()
        try:
            times, cpu, kept = [], [], 0
            for rep in range(2):  # a fresh output each time: a second build into the same one writes nothing
                t0, c0 = time.perf_counter(), time.process_time()
                result = build_dataset(config, os.path.join(work, f"out{rep}"))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                kept = result.manifest["rows"]
        finally:
            restore()
        return {
            "dataset_build_s_per_10k_turns": round(min(times) * 10_000 / turns, 3),
            "build_s": [round(t, 3) for t in times],
            "build_cpu_s": [round(t, 3) for t in cpu],
            "turns": turns,
            "kept": kept,
            "funnel": result.manifest["funnel"],
        }
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=10_000, help="memory turns in the synthetic store")
    p.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (default: a temporary folder)")
    args = p.parse_args()
    print(json.dumps(dataset_build_figures(args.turns, args.keep)))


if __name__ == "__main__":
    main()
