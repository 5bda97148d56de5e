"""Rollout orchestration benchmark: what automem adds per step, and how well it keeps a slow model busy.

    .venv/bin/python benchmarks/rollout.py            # full run (~3 minutes on 2 cores)
    .venv/bin/python benchmarks/rollout.py --quick    # smaller, for a smoke check

Prints one JSON line:
- overhead_us_per_step: wall time per step of the real agent + runner + trajectory writer with an in-process
  zero-latency model and a trivial game (so all of it is orchestration and storage), after a 100-step warm-up
  episode (imports, caches). Target <= 1,000.
- concurrency_efficiency_n1000: steps/s with 1,000 concurrent episodes on Ray runner actors against a real HTTP
  stub model that answers after 2 s, divided by the ideal (1,000 episodes / (3 calls per step x 2 s)). Target >= 0.8.
  The clock starts once the runner actors answer (their start-up is a one-off); env creation, resets, every
  commit and the tail of the run are inside it.
- bytes_per_step_ratio_10k_vs_1k: stored bytes per step of a 10,000-step episode over a 1,000-step one (the op log
  grows with steps, not steps x memory). Target <= 1.2.
- vs_process_pool_speedup: the same episodes on the reference design (a pool of 10 processes, one episode each)
  vs automem's runners, against the same stub (0.2 s latency); reported, no target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from automem.llm.protocol import ChatResult
from automem.llm.stub_server import reply_for, spawn
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.scaffold import load

ROOT = Path(__file__).resolve().parents[1]
ENV_KW = {"length": 10**9, "max_steps": 10**9}  # a corridor that never ends: episodes run to --max-steps


class InstantModel:
    """An in-process model with zero latency whose replies satisfy the request's grammar."""

    def __init__(self) -> None:
        import random

        self.rng = random.Random(0)

    async def chat(self, messages, *, model, sampling=None, constraint=None):
        text = reply_for(constraint.regex if constraint else None, self.rng)
        return ChatResult(text, 100, 10, 0.0, model)


def _jobs(run_id: str, episodes: int, steps: int):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    return make_jobs(
        run_id=run_id,
        env_id="corridor-v0",
        episodes=episodes,
        seeds=[0],
        scaffold=sc,
        memory_model="stub",
        action_model="stub",
        max_steps=steps,
        env_kwargs=ENV_KW,
    )


def _dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet"))


def overhead_and_bytes(steps_short: int, steps_long: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        runner = EpisodeRunner(
            RunnerConfig(endpoint="http://unused", storage_root=tmp), client=InstantModel()
        )
        (warm,) = _jobs("warm", 1, 100)  # imports, env registry and caches: not per-step cost
        asyncio.run(runner.run(warm))
        sizes = {0: _dir_bytes(os.path.join(tmp, "tables"))}
        for n in (steps_short, steps_long):
            (job,) = _jobs(f"b{n}", 1, n)
            t0 = time.perf_counter()
            res = asyncio.run(runner.run(job))
            wall = time.perf_counter() - t0
            sizes[n] = _dir_bytes(os.path.join(tmp, "tables")) - sum(sizes.values())
            if n == steps_short:
                out["overhead_us_per_step"] = round(wall / res.steps * 1e6, 1)
        del sizes[0]
        out["bytes_per_step_1k"] = round(sizes[steps_short] / steps_short, 1)
        out["bytes_per_step_10k"] = round(sizes[steps_long] / steps_long, 1)
        out["bytes_per_step_ratio_10k_vs_1k"] = round(out["bytes_per_step_10k"] / out["bytes_per_step_1k"], 3)
    return out


def _start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    return spawn(latency)


def automem_run(endpoint: str, episodes: int, steps: int, concurrency: int, runners: int) -> float:
    from actors.scheduler import RolloutScheduler

    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunnerConfig(endpoint=endpoint, storage_root=tmp, max_llm_inflight=concurrency * 3)
        sched = RolloutScheduler(
            _jobs(f"c{episodes}", episodes, steps),
            cfg,
            num_runners=runners,
            concurrency=concurrency,
            runner_cpus=0.5,
        )
        sched.start()  # actor start-up is a one-off, not throughput
        t0 = time.perf_counter()
        result = sched.run()
        wall = time.perf_counter() - t0
        assert len(result.done) == episodes, result.failed
    return wall


def _pool_episode(args):
    endpoint, job, tmp = args
    runner = EpisodeRunner(RunnerConfig(endpoint=endpoint, storage_root=tmp))
    return asyncio.run(runner.run(job)).steps


def pool_run(endpoint: str, episodes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        jobs = _jobs("pool", episodes, steps)
        t0 = time.perf_counter()
        with mp.get_context("spawn").Pool(10) as pool:
            pool.map(_pool_episode, [(endpoint, j, tmp) for j in jobs], chunksize=1)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    out = overhead_and_bytes(200 if a.quick else 1000, 2000 if a.quick else 10000)

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # env-ok: sets for the local cluster
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        n, steps, latency = (200, 3, 2.0) if a.quick else (1000, 5, 2.0)
        stub, endpoint = _start_stub(latency)
        try:
            automem_run(endpoint, 20, 1, 20, 1)  # warm the actors' imports
            wall = automem_run(endpoint, n, steps, n, 2)
        finally:
            stub.kill()
        ideal = n * steps / (steps * 3 * latency)
        out["concurrency_steps_per_s"] = round(n * steps / wall, 2)
        out["concurrency_ideal_steps_per_s"] = round(ideal, 2)
        out[f"concurrency_efficiency_n{n}"] = round(n * steps / wall / ideal, 3)

        episodes, steps, latency = (40, 3, 0.2) if a.quick else (100, 5, 0.2)
        stub, endpoint = _start_stub(latency)
        try:
            ours = automem_run(endpoint, episodes, steps, episodes, 1)
            pool = pool_run(endpoint, episodes, steps)
        finally:
            stub.kill()
        out["pool10_wall_s"] = round(pool, 2)
        out["automem_wall_s"] = round(ours, 2)
        out["vs_process_pool_speedup"] = round(pool / ours, 2)
    finally:
        ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
