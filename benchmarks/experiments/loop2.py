"""The Loop 2 experiment on the embedded model (issue 15, item 5): does a specialist distilled from SmolLM2's own
good memory turns manage memory better than SmolLM2 on seeds it never saw?

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/experiments/loop2.py --root /work/experiments/loop2
    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/experiments/loop2.py --root R --stages collect   # one stage

Stages, each resumable (run the same command again after a stop; finished stages are skipped):

1. ``collect``: constrained Crafter episodes from the base model on training seeds (run ``collect``) and on
   held-out seeds (run ``heldout``), through ``run_rollout`` (a stopped rollout resumes; committed episodes are
   never replayed).
2. ``dataset``: ``clean`` turns of ``collect`` (``utility`` kept 0.9% of SmolLM2's turns: docs/LOG.md) (held-out seeds excluded and recorded), ``<root>/datasets/<id>``.
3. ``train``: the ``cpu-small`` preset on Ray Train (checkpoints every 5 steps, so a stopped run resumes),
   ``<root>/train/adapter``.
4. ``publish``: the adapter into the embedded endpoint as ``smollm2-135m:loop2-exp`` (a merged copy).
5. ``eval``: ``automem distill eval`` on the held-out LOG turns (both models, with and without the grammar),
   ``<root>/eval.json``.
6. ``episodes``: two-model rollouts (memory turns by the adapter, actions by the base) on the first
   ``--episode-seeds`` held-out seeds (run ``heldout-adapter``), compared paired by seed with the base model's
   ``heldout`` episodes (``automem diagnose --compare memory_model``), ``<root>/episodes.json``.

Not in ``make test`` nor ``make bench`` (which runs ``benchmarks/*.py``): on 2 cores, collecting 48 + 16 episodes of 30 steps takes about an hour at ~0.33 steps/s,
training ~45 minutes, the evaluation ~10-20 minutes. Prints one JSON line with the figures at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

STAGES = ("collect", "dataset", "train", "publish", "eval", "episodes")
ADAPTER = "loop2-exp"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def collect(
    root: Path, run_id: str, seeds: str, episodes: int, max_steps: int, memory_model: str | None = None
) -> None:
    from automem.rollout import RolloutConfig, run_rollout
    from automem.trajectory import read_manifest

    out = str(root / "runs")
    resume = read_manifest(out, run_id) is not None if (root / "runs").exists() else False
    config = RolloutConfig(
        env="crafter-v0",
        episodes=episodes,
        seeds=seeds,
        max_steps=max_steps,
        out=out,
        run_id=run_id,
        memory_model=memory_model,
    )
    say(
        f"collect {run_id}: {episodes} episodes of {max_steps} steps, seeds {seeds}{' (resume)' if resume else ''}"
    )
    result = run_rollout(config, resume=resume, say=say)
    if result.interrupted:  # Ctrl-C: run_rollout stops its runners and returns; so does the experiment
        sys.exit(
            f"collect {run_id}: interrupted after {result.committed} episodes; run the same command to resume"
        )
    say(f"collect {run_id}: {result.committed} committed, failed {result.failed}")


def dataset(root: Path, heldout: str) -> str:
    from automem.distill import DatasetConfig, build_dataset

    config = DatasetConfig(
        source=str(root / "runs"), run_id="collect", strategy="clean", holdout_seeds=heldout
    )
    result = build_dataset(config, str(root))
    say(f"dataset {result.dataset_id}: {result.manifest['rows']} rows; funnel {result.manifest['funnel']}")
    return str(result.path)


def train(root: Path, dataset_dir: str) -> Path:
    from actors.training import RayTrainLauncher
    from automem.training import load_distill_config, train_adapter

    adapter = root / "train" / "adapter"
    if (adapter / "training.json").is_file():
        say(f"train: {adapter} already trained")
        return adapter
    config = load_distill_config(
        dataset=dataset_dir, preset="cpu-small", overrides=["save_steps=5", "force=true"]
    )
    result = train_adapter(config, root / "train", RayTrainLauncher(), progress=say)
    say(f"train: loss {result.metrics.get('first_loss')} -> {result.metrics.get('last_loss')}")
    return result.adapter_dir


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], text=True, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="where the store, dataset, adapter and results go")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    p.add_argument("--train-seeds", default="0-47")
    p.add_argument("--heldout-seeds", default="1000-1015")
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--eval-turns", type=int, default=200, help="held-out LOG turns asked again")
    p.add_argument(
        "--episode-seeds", type=int, default=8, help="held-out seeds of the episode-level comparison"
    )
    args = p.parse_args()
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    from automem.rollout.jobs import parse_seeds

    figures: dict = {"root": str(root)}
    t0 = time.perf_counter()
    if "collect" in stages:
        collect(root, "collect", args.train_seeds, len(parse_seeds(args.train_seeds)), args.max_steps)
        collect(root, "heldout", args.heldout_seeds, len(parse_seeds(args.heldout_seeds)), args.max_steps)
    dataset_dir = dataset(root, args.heldout_seeds) if {"dataset", "train"} & set(stages) else None
    adapter = train(root, dataset_dir) if "train" in stages and dataset_dir else root / "train" / "adapter"
    if "publish" in stages:
        res = cli("model", "publish", str(adapter), ADAPTER, "--replace")
        if res.returncode:
            sys.exit(f"publish failed: {res.stderr.strip()}")
        say(f"published: {res.stdout.strip()}")
    if "eval" in stages:
        out = root / "eval.json"
        res = cli(
            "distill", "eval", "--from", str(root / "runs"), "--run", "heldout", "--adapter", ADAPTER,
            "--limit", str(args.eval_turns), "--json", str(out),
        )  # fmt: skip
        print(res.stdout, file=sys.stderr)
        if res.returncode:
            sys.exit(f"eval failed: {res.stderr.strip()}")
        figures["comparisons"] = json.loads(out.read_text())["comparisons"]
    if "episodes" in stages:
        seeds = parse_seeds(args.heldout_seeds)
        subset = ",".join(str(seeds[i]) for i in range(min(args.episode_seeds, len(seeds))))
        collect(
            root, "heldout-adapter", subset, len(subset.split(",")), args.max_steps, f"smollm2-135m:{ADAPTER}"
        )
        res = cli(
            "diagnose", str(root / "runs"), "--compare", "memory_model", "--baseline", "smollm2-135m", "--json",
            "--episodes", "SELECT run_id, episode_id FROM episodes WHERE run_id IN ('heldout', 'heldout-adapter')",
        )  # fmt: skip
        if res.returncode:
            sys.exit(f"diagnose failed: {res.stderr.strip()}")
        (root / "episodes.json").write_text(res.stdout)
        figures["episodes"] = json.loads(res.stdout)
    figures["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
