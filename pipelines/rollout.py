"""Rollout: play many episodes in parallel on Ray actors against a model endpoint; store them as Parquet.

    automem rollout --env crafter-v0 --episodes 8 --max-steps 30 --out runs/demo
    automem rollout --config rollout.yaml episodes=64 concurrency=32       # a RolloutConfig file plus overrides
    automem rollout --env nethack-v0 --episodes 1000 --concurrency 1000 --endpoint http://serve:8000/v1 \\
        --model qwen2.5-7b --memory-model qwen2.5-7b:mem-v1 --out s3://bucket/trajectories --run-id nh-0001
    automem rollout --resume --run-id nh-0001 --out s3://bucket/trajectories   # after a crash or Ctrl-C
    ray job submit --working-dir . -- automem rollout --env crafter-v0 --episodes 64 --out s3://bucket/t

Settings are a RolloutConfig (automem/rollout/config.py documents every field): --config YAML, then KEY=VALUE,
then the flags (sugar over the same fields); all checked before anything is written. A resume takes what to play
(env, episodes, seeds, scaffold, models, step cap) from the run's manifest, and its endpoint unless --endpoint is
given; the rest (concurrency, runners, limits) may change. From Python: automem.rollout.run_rollout.
"""

from __future__ import annotations

import argparse

# flag -> (RolloutConfig field, type, help). The help repeats the field's default as text so that building the
# parser imports nothing heavy (a test keeps the two in step).
FLAGS: dict[str, tuple[str, type, str]] = {
    "--env": ("env", str, "environment id (`automem env list`; default crafter-v0)"),
    "--episodes": ("episodes", int, "number of episodes (default 8)"),
    "--seeds": ("seeds", str, "seed list: '1,5,9', '0-99' or a mix (default 0-999)"),
    "--scaffold": ("scaffold", str, "scaffold name or YAML file (default: <env family>-v0)"),
    "--model": ("model", str, "model that commits actions (default smollm2-135m)"),
    "--memory-model": ("memory_model", str, "model for memory turns, e.g. BASE:ADAPTER (default: --model)"),
    "--endpoint": ("endpoint", str, "OpenAI-compatible base URL, or 'embedded' (default embedded)"),
    "--max-steps": ("max_steps", int, "step cap per episode (default 30)"),
    "--concurrency": ("concurrency", int, "episodes in flight at once (default 8)"),
    "--runners": ("runners", int, "runner actors (default: concurrency/64 + 1, at most 16)"),
    "--max-attempts": ("max_attempts", int, "attempts per episode in this invocation (default 3)"),
    "--max-llm-inflight": ("max_llm_inflight", int, "model requests open over all runners (default 256)"),
    "--episode-timeout": ("episode_timeout", float, "seconds one attempt may take (default: no limit)"),
    "--retry-backoff": ("retry_backoff", float, "seconds before a first retry, doubled after (default 10.0)"),
    "--placement-timeout": ("placement_timeout", float, "seconds to wait for a runner (default 600.0)"),
    "--context-window": ("context_window", int, "the served model's context length (default 4096)"),
    "--out": ("out", str, "storage root: a folder or s3://bucket/prefix (default runs)"),
    "--run-id": ("run_id", str, "run id (default: <env>-<UTC time>); needed for --resume"),
    "--address": ("address", str, "Ray cluster address (default: RAY_ADDRESS, a running local one, or new)"),
    "--executor": ("executor", str, "ray, or local: in this process without Ray (default ray)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="run many episodes in parallel and store their trajectories",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="RolloutConfig fields, e.g. episodes=64")
    p.add_argument("--config", metavar="FILE", help="a RolloutConfig YAML file")
    for flag, (field, kind, text) in FLAGS.items():
        p.add_argument(flag, dest=field, type=kind, default=None, help=text)
    resource = "a custom Ray resource each runner requests, e.g. rollout=0.01 (repeatable)"
    p.add_argument(
        "--runner-resource", dest="runner_resources", action="append", metavar="N=X", help=resource
    )
    p.add_argument("--resume", action="store_true", help="continue run --run-id, skipping committed episodes")
    p.add_argument(
        "--force", action="store_true", help="with --resume: take over a run whose driver looks alive"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a log line every ~10 s)")


def run(args: argparse.Namespace) -> int:
    """Build the config, make one library call, print what happened."""
    from automem.config import ConfigError, apply_overrides, parse_model, read_yaml
    from automem.rollout import RolloutConfig, RolloutError, RunBusy, RunFailed, run_rollout
    from automem.rollout.lifecycle import default_run_id
    from automem.rollout.resume import parse_resources
    from automem.trajectory.runs import LeaseLost
    from pipelines._common import Reporter, fail, print_rollout_summary, say

    if args.force and not args.resume:
        return fail("rollout", "--force only applies to --resume")
    try:
        tree = apply_overrides(read_yaml(args.config) if args.config else {}, args.overrides)
        tree.update({f: getattr(args, f) for f, _, _ in FLAGS.values() if getattr(args, f) is not None})
        if args.runner_resources is not None:
            tree["runner_resources"] = parse_resources(args.runner_resources)
        flags = {field: flag for flag, (field, _, _) in FLAGS.items()}
        config = parse_model(RolloutConfig, tree, source="settings", what="rollout config", labels=flags)
    except (ConfigError, ValueError) as exc:
        return fail("rollout", "; ".join(line.strip() for line in str(exc).splitlines()))
    if config.run_id is None and not args.resume:
        config = config.model_copy(update={"run_id": default_run_id(config)})
    resume_line = f"automem rollout --resume --run-id {config.run_id} --out {config.out}"
    reporter = Reporter(quiet=args.no_progress)
    try:
        with reporter:
            result = run_rollout(
                config, resume=args.resume, force=args.force, on_progress=reporter.update, say=say
            )
    except LeaseLost as exc:  # another driver took the run over (--force): it carries on, this one stops
        return fail("rollout", f"run {config.run_id}: {exc}", code=1)
    except (RolloutError, RunBusy) as exc:
        return fail("rollout", str(exc))
    except RunFailed as exc:  # runners cannot start or be placed, or the store cannot be written
        fail("rollout", str(exc), code=1)
        say(f"committed episodes are kept; after fixing it, continue with:\n  {resume_line}")
        return 1
    print_rollout_summary(result)
    if result.interrupted:
        say(f"\ninterrupted: committed episodes are kept. Continue with:\n  {resume_line}")
        return 130
    return 0 if not result.failed else 1
