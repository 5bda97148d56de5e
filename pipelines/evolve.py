r"""Evolve: Loop 1. A reviewer reads the episodes and revises the scaffold; a paired gate keeps a revision or drops it.

    automem evolve --env crafter-v0 --reviewer rules --tune-seeds 0-15 --holdout-seeds 1000-1031 --iterations 5 \
        --out runs
    automem evolve --reviewer openai --iterations 2 --out runs --name llm       # the embedded model reviews
    automem evolve --reviewer openai:Qwen/Qwen2.5-72B-Instruct@http://10.0.0.5:8000/v1 --out s3://bucket/evolve
    ray job submit --working-dir . -- automem evolve --out s3://bucket/evolve --executor ray

Each iteration plays the scaffold in force once on every tuning seed (a scaffold is played once, however many
iterations it stays in force), digests those episodes in the reviewer's tokens, asks the reviewer for one patch,
checks it (strict schema, known operations, the context budget), plays the candidate on the same seeds, and keeps it
only when the lower confidence bound of its per-seed progression gain clears --margin (a sign-flip permutation test;
its false-accept rate is at most 1 - --level). Afterwards the starting and the final scaffold play the held-out
seeds once. The same command again after a crash resumes: finished iterations are kept, a cut rollout continues.

Reviewers: ``rules`` (no model: rules over the run's diagnostics), ``openai[:MODEL[@URL]]`` (the embedded model by
default; a URL's key from OPENAI_API_KEY), ``anthropic:MODEL`` (the `anthropic` extra and ANTHROPIC_API_KEY).
Loop 2's specialist plays memory turns with --memory-model BASE:ADAPTER.

The lineage (every candidate, its patch, diff, digest size, gate statistics and decision) is the store's ``lineage``
table: ``automem query ROOT "SELECT iteration, decision, mean_diff, lower FROM lineage"``; ``automem report``
draws it as a tree. The final scaffold is ``ROOT/evolve/NAME/final.yaml``. Exit status: 0; 1 if a rollout failed to
run; 2 for bad input (an unknown reviewer, an unreachable reviewer or agent endpoint, overlapping seeds, a run of
that name declared differently); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys

from pipelines._common import fail, say

_COMMAND = "evolve"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="Loop 1: revise the scaffold from reviewed episodes, behind a paired statistical gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs", metavar="ROOT", help="the store (folder or s3://; default runs)")
    p.add_argument("--name", default="evolve", help="the run's name (default evolve); reuse it to resume")
    p.add_argument("--env", default="crafter-v0", help="environment id (default crafter-v0)")
    p.add_argument("--scaffold", help="starting scaffold, a name or YAML file (default: <env family>-v0)")
    p.add_argument(
        "--reviewer", default="rules", help="rules (default), openai[:MODEL[@URL]] or anthropic:MODEL"
    )
    p.add_argument("--tune-seeds", default="0-15", metavar="SEEDS", help="gate seeds (default 0-15)")
    p.add_argument(
        "--holdout-seeds",
        default="1000-1031",
        metavar="SEEDS",
        help="seeds of the final comparison (default 1000-1031; 'none' skips it)",
    )
    p.add_argument("--iterations", type=int, default=5, help="review-and-gate rounds (default 5)")
    p.add_argument(
        "--margin", type=float, default=0.0, help="progression gain the lower bound must exceed (0)"
    )
    p.add_argument("--level", type=float, default=0.95, help="confidence of the lower bound (default 0.95)")
    p.add_argument(
        "--digest-tokens", type=int, help="digest budget (default: what the reviewer's prompt holds)"
    )
    p.add_argument("--model", help="model that commits actions (default: the embedded one)")
    p.add_argument("--memory-model", help="model for memory turns, e.g. BASE:ADAPTER (Loop 2's specialist)")
    p.add_argument("--endpoint", default="embedded", help="the agent's endpoint URL, or embedded (default)")
    p.add_argument("--max-steps", type=int, default=30, help="steps per episode (default 30)")
    p.add_argument("--concurrency", type=int, default=8, help="episodes in flight (default 8)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray", help="ray (default) or local")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (a log line every ~10 s)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="rollout settings, e.g. max_llm_inflight=32"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automem.config import ConfigError, parse_model
    from automem.evolve.loop import Evolve, EvolveConfig, EvolveError, rollout_player
    from automem.evolve.reviewers import ReviewerError, make_reviewer
    from automem.rollout import RolloutError, RunFailed
    from automem.scaffold.io import ScaffoldError
    from automem.trajectory.runs import RunBusy
    from pipelines._common import Reporter

    tree = {
        "name": args.name,
        "out": args.out,
        "env": args.env,
        "scaffold": args.scaffold,
        "reviewer": args.reviewer,
        "tune_seeds": args.tune_seeds,
        "holdout_seeds": None if args.holdout_seeds.lower() == "none" else args.holdout_seeds,
        "iterations": args.iterations,
        "gate": {"margin": args.margin, "level": args.level},
        "digest_tokens": args.digest_tokens,
        "memory_model": args.memory_model,
        "endpoint": args.endpoint,
        "max_steps": args.max_steps,
        "concurrency": args.concurrency,
        "executor": args.executor,
        "rollout": list(args.overrides),
    }
    if args.model:
        tree["model"] = args.model
    labels = {k: f"--{k.replace('_', '-')}" for k in tree} | {
        "gate.margin": "--margin",
        "gate.level": "--level",
    }
    try:
        config = parse_model(EvolveConfig, tree, source="the command line", what="evolve", labels=labels)
        reviewer = make_reviewer(config.reviewer, context_window=config.context_window, say=say)
        play = rollout_player(config, progress=lambda: Reporter(quiet=args.no_progress), say=say)
        evolve = Evolve(config, reviewer, play, say=say)
    except (ConfigError, ValueError, ReviewerError, EvolveError, ScaffoldError) as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    try:
        result = evolve.run()
    except (EvolveError, RolloutError, RunBusy) as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    except RunFailed as exc:
        fail(_COMMAND, str(exc), code=1)
        say("finished iterations are kept; after fixing it, run the same command again")
        return 1
    except KeyboardInterrupt:
        say(
            "\ninterrupted: finished iterations and committed episodes are kept; run the same command to resume"
        )
        return 130
    _print(result, config, evolve)
    return 0


def _num(value: object, fmt: str = "+.3f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "-"


def _print(result, config, evolve) -> None:
    print(
        f"{'it':>3} {'decision':<15} {'scaffold':<26} {'rule':<14} {'gain':>7} {'lower':>7} {'p':>6}  reason"
    )
    for r in result.rows:
        reason = " ".join((r.get("reason") or "").split())
        print(
            f"{r['iteration']:>3} {r['decision']:<15} {(r.get('scaffold_id') or '-'):<26} "
            f"{(r.get('rule') or '-'):<14} {_num(r.get('mean_diff')):>7} {_num(r.get('lower')):>7} "
            f"{_num(r.get('p_value'), '.3f'):>6}  {reason[:90]}"
        )
    accepted = sum(r["decision"] == "accepted" for r in result.rows)
    final_id = next(r["scaffold_id"] for r in result.rows if r.get("content_id") == result.final)
    print(f"accepted {accepted} of {len(result.rows) - 1} candidates; final scaffold {final_id}")
    h = result.holdout
    if h and "mean_b" not in h:
        lo, hi = h["lo"], h["hi"]
        interval = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        print(
            f"held-out seeds {h['seeds']} ({h['n']} episodes): the starting scaffold scores {h['mean_a']:.3f}{interval}"
        )
    elif h:
        print(
            f"held-out seeds {h['seeds']} ({h['n']} pairs): progression {h['mean_a']:.3f} -> {h['mean_b']:.3f}, "
            f"gain {h['mean_diff']:+.3f}, {int(round(100 * config.gate.level))}% lower bound {h['lower']:+.3f}"
        )
    evolve.st.write_bytes(evolve.st.path("evolve", config.name, "final.yaml"), result.final_yaml.encode())
    print(f"final scaffold: {config.out.rstrip('/')}/evolve/{config.name}/final.yaml")
    print(f'lineage: automem query {config.out} "SELECT iteration, decision, mean_diff, lower FROM lineage"')
    sys.stdout.flush()
