"""The embedded end-to-end demo behind `make demo`.

    automem demo                 # 8 Crafter episodes of 30 steps on the embedded endpoint, into ./runs
    automem demo --episodes 2 --max-steps 5

Starts (or reuses) the embedded endpoint (Ray Serve LLM, vLLM CPU build, SmolLM2-135M-Instruct), runs a small
parallel Crafter rollout with a progress bar, prints a summary table and where the data is. The endpoint is left
running for `automem chat` and further rollouts; `automem serve --stop` stops it.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the embedded end-to-end demo behind `make demo`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", default="crafter-v0", help="environment id (default crafter-v0)")
    p.add_argument("--episodes", type=int, default=8, help="episodes (default 8)")
    p.add_argument("--max-steps", type=int, default=30, help="steps per episode (default 30)")
    p.add_argument("--out", default="runs", help="storage root (default ./runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automem.rollout import RolloutConfig, RunBusy, RunFailed, run_rollout
    from pipelines._common import Reporter, fail, print_rollout_summary, say

    try:
        config = RolloutConfig(
            env=args.env,
            episodes=args.episodes,
            concurrency=args.episodes,
            max_steps=args.max_steps,
            seeds=f"0-{args.episodes - 1}",
            endpoint="embedded",
            out=args.out,
        )
        with Reporter() as reporter:
            result = run_rollout(config, on_progress=reporter.update, say=say)
    except (
        ValueError,
        RunBusy,
        RunFailed,
    ) as exc:  # RolloutError and a config's ValidationError are ValueErrors
        return fail("demo", "; ".join(line.strip() for line in str(exc).splitlines()))
    print_rollout_summary(result)
    if result.interrupted:
        return 130
    print(f"\nnext: automem diagnose {args.out}   ·   automem report {args.out} --out report.html")
    return 0 if not result.failed else 1
