"""Per-step costs that size a cluster (docs/SCALE.md): runner CPU, stored bytes and model tokens per step.

    .venv/bin/python benchmarks/scale_inputs.py                                  # ~2 minutes on 2 cores
    .venv/bin/python benchmarks/scale_inputs.py --store /work/experiments/loop1  # plus a real model's store
    .venv/bin/python benchmarks/scale_inputs.py --quick                          # smoke check

Prints one JSON line:
- ``runner[<env>]``: the episode runner (agent, game, HTTP client, trajectory writer) in this process, playing
  ``--concurrency`` episodes at once against the real HTTP stub model (its CPU is its own process's, not counted),
  after a warm-up episode: ``cpu_s_per_step`` (this process's user+system CPU over all its threads),
  ``wall_s_per_step`` over all episodes, ``bytes_per_step`` (Parquet on disk, all tables), the stub's
  ``prompt_tokens_per_step`` (characters / 4, as the stub counts them), ``requests_per_step``,
  ``system_prompt_tokens`` (the static prefix a prefix cache serves, characters / 4). ``corridor-v0`` is
  a trivial game, so its figure is automem's own overhead; ``nethack-v0`` adds NLE and the text rendering.
- ``nethack_env_rss_mib``: resident memory one more NetHack game adds after its reset (a floor).
- ``store``: from the committed episodes of a real store (``--store``, e.g. the embedded-model experiments): steps,
  ``bytes_per_step`` (Parquet files of every table), ``prompt_tokens_per_step`` and ``completion_tokens_per_step``
  as the model server counted them, ``requests_per_step`` (model turns), ``system_prompt_tokens``, per
  environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automem.llm.stub_server import spawn  # noqa: E402
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs  # noqa: E402
from automem.scaffold import load  # noqa: E402

ENV_KW = {"corridor-v0": {"length": 10**9, "max_steps": 10**9}}
SCAFFOLD = {"corridor-v0": "crafter-v0", "nethack-v0": "nethack-v0"}


def _jobs(env_id: str, run_id: str, episodes: int, steps: int):
    sc = load(SCAFFOLD[env_id])
    if env_id == "corridor-v0":
        sc = sc.model_copy(update={"default_action": "wait"})
    return make_jobs(
        run_id=run_id,
        env_id=env_id,
        episodes=episodes,
        seeds=list(range(episodes)),
        scaffold=sc,
        memory_model="stub",
        action_model="stub",
        max_steps=steps,
        env_kwargs=ENV_KW.get(env_id, {}),
    )


def _parquet_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet"))


def runner_costs(endpoint: str, env_id: str, episodes: int, steps: int) -> dict:
    """CPU, bytes and tokens per step of the runner playing ``episodes`` concurrent episodes of ``env_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        runner = EpisodeRunner(RunnerConfig(endpoint=endpoint, storage_root=tmp, max_llm_inflight=256))

        async def play(job_list):
            return await asyncio.gather(*(runner.run(j) for j in job_list))

        async def main():
            await play(_jobs(env_id, "warm", 1, 5))  # imports, registries, the HTTP session: not per step
            before = _parquet_bytes(tmp)
            cpu0, t0 = time.process_time(), time.perf_counter()
            outcomes = await play(_jobs(env_id, "measure", episodes, steps))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            await runner.close()
            return outcomes, cpu, wall, _parquet_bytes(tmp) - before

        outcomes, cpu, wall, stored = asyncio.run(main())
        from automem.trajectory import load as load_store

        eps = load_store(tmp, ("episodes",), run_id="measure")["episodes"].to_pylist()
    n = sum(o.steps for o in outcomes)
    return {
        "episodes": episodes,
        "steps": n,
        "cpu_s_per_step": round(cpu / n, 5),
        "wall_s_per_step": round(wall / n, 5),
        "bytes_per_step": round(stored / n, 1),
        "prompt_tokens_per_step": round(sum(e["prompt_tokens"] for e in eps) / n, 1),
        "completion_tokens_per_step": round(sum(e["completion_tokens"] for e in eps) / n, 1),
        "requests_per_step": round(sum(e["turns"] for e in eps) / n, 2),
        "system_prompt_tokens": _system_tokens(eps),
    }


def _system_tokens(eps: list[dict]) -> float:
    """Mean tokens of the static prefix (the system message, the same in every request of an episode), as
    characters / 4: the part vLLM's prefix cache can serve after the first request."""
    return round(sum(len(e["system_prompt"] or "") for e in eps) / max(1, len(eps)) / 4, 1)


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def env_memory_mib(env_id: str, n: int = 20) -> float:
    """Resident memory each extra ``env_id`` instance adds after its reset (MiB; a floor: a long game grows)."""
    from automem.envs import make_env

    first = make_env(env_id)
    first.reset(seed=0)
    before = _rss_mib()
    envs = [make_env(env_id) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    grown = (_rss_mib() - before) / n
    for env in [first, *envs]:
        env.close()
    return round(grown, 2)


def store_costs(root: str) -> dict:
    """Bytes and tokens per step of every committed episode in the store at ``root``, per environment."""
    from automem.trajectory import Storage
    from automem.trajectory.reader import committed_files
    from automem.trajectory.schemas import TABLES

    storage = Storage(root)
    eps = load_store_episodes(root)
    total_bytes = 0
    for table in TABLES:
        for path in committed_files(storage, table):
            total_bytes += storage.fs.get_file_info(path).size or 0
    per_env: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in eps:
        acc = per_env[e["env_id"]]
        acc["episodes"] += 1
        acc["steps"] += e["steps"]
        acc["prompt_tokens"] += e["prompt_tokens"]
        acc["completion_tokens"] += e["completion_tokens"]
        acc["turns"] += e["turns"]
        acc["system_chars"] += len(e["system_prompt"] or "")
    steps = sum(a["steps"] for a in per_env.values())
    out: dict = {
        "root": root,
        "episodes": len(eps),
        "steps": int(steps),
        "bytes_per_step": round(total_bytes / steps, 1),
    }
    for env_id, a in per_env.items():
        out[env_id] = {
            "episodes": int(a["episodes"]),
            "steps": int(a["steps"]),
            "prompt_tokens_per_step": round(a["prompt_tokens"] / a["steps"], 1),
            "completion_tokens_per_step": round(a["completion_tokens"] / a["steps"], 1),
            "requests_per_step": round(a["turns"] / a["steps"], 2),
            "system_prompt_tokens": round(a["system_chars"] / a["episodes"] / 4, 1),
        }
    return out


def load_store_episodes(root: str) -> list[dict]:
    from automem.trajectory import load as load_store

    cols = ["env_id", "steps", "prompt_tokens", "completion_tokens", "turns", "system_prompt"]
    return load_store(root, ("episodes",), columns={"episodes": cols})["episodes"].to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="a real store to read bytes and tokens per step from")
    ap.add_argument("--envs", default="corridor-v0,nethack-v0")
    ap.add_argument("--concurrency", type=int, default=16, help="episodes played at once")
    ap.add_argument("--steps", type=int, default=40, help="steps per episode")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    episodes, steps = (4, 10) if args.quick else (args.concurrency, args.steps)
    proc, url = spawn(0.0)
    try:
        out: dict = {"runner": {}}
        for env_id in args.envs.split(","):
            out["runner"][env_id] = runner_costs(url, env_id, episodes, steps)
    finally:
        proc.kill()
        proc.wait()
    if "nethack-v0" in args.envs.split(","):
        out["nethack_env_rss_mib"] = env_memory_mib("nethack-v0")
    if args.store:
        out["store"] = store_costs(args.store)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
