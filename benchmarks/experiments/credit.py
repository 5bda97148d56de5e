"""The memory-credit experiment on the embedded model (issue 19): what were a few of SmolLM2's LOG turns worth to the
rest of its Crafter game?

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/experiments/credit.py --parent /work/experiments/loop1 \
        --out /work/experiments/credit/store

The parent is an episode of the Loop 1 experiment's store (``benchmarks/experiments/loop1.py``; run id and episode
below: 40 steps of crafter-v0 seed 4, its one achievement at step 11). ``automem branch credit`` branches it after
each chosen LOG turn twice, with the memory as recorded and without that turn's operations, ``--copies`` times each
with shared sampling seeds, ``--horizon`` steps on. Two runs, each resumable (the same command continues a cut run):

1. ``credit-s4``: four turns (0, 7, 8, 9: the turns that wrote before the achievement), 4 copies.
2. ``credit-s4-k8``: two of them again with 8 copies on other sampling seeds (100+), for a narrower interval.

Not in ``make test`` nor ``make bench``: on 2 cores each run takes ~14 minutes (480 steps at ~0.6 steps/s). Prints
the credit tables, then one JSON line of every credit with its interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT_DIR)

PARENT_RUN = "rules-long-326a2dafd5-tune"
EPISODE = "000004-crafter-v0-s4"
RUNS = [
    ("credit-s4", "0:log:0,7:log:0,8:log:0,9:log:0", 4, 0),
    ("credit-s4-k8", "0:log:0,7:log:0", 8, 100),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parent", default="/work/experiments/loop1", help="the Loop 1 experiment's store")
    p.add_argument("--out", default="/work/experiments/credit/store", help="the credit runs' store")
    p.add_argument("--endpoint", default="embedded", help="the agent's endpoint (default: the embedded one)")
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    args = p.parse_args()
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    for run_id, turns, copies, seed in RUNS:
        cmd = [sys.executable, "-m", "pipelines.cli", "branch", "credit", args.parent, PARENT_RUN, EPISODE]
        cmd += [
            "--turns",
            turns,
            "--copies",
            str(copies),
            "--sampling-seed",
            str(seed),
            "--horizon",
            str(args.horizon),
        ]
        cmd += ["--endpoint", args.endpoint, "--executor", args.executor, "--concurrency", "16"]
        cmd += ["--out", args.out, "--run-id", run_id, "--no-progress"]
        print("$", " ".join(cmd[2:]), flush=True)
        if subprocess.run(cmd, cwd=ROOT_DIR, env=env).returncode != 0:
            return 1
    from automem.branch.credit import credits

    rows = [dataclasses.asdict(c) | {"run_id": run} for run, *_ in RUNS for c in credits(args.out, run)]
    print(json.dumps({"parent": f"{PARENT_RUN}/{EPISODE}", "horizon": args.horizon, "credits": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
