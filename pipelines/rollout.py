"""Rollout: play many episodes in parallel on Ray actors against a model endpoint; store them as Parquet.

    automem rollout --env crafter-v0 --episodes 8 --max-steps 30 --out runs/demo
    automem rollout --env nethack-v0 --episodes 1000 --concurrency 1000 --endpoint http://serve:8000/v1 \\
        --model qwen2.5-7b --memory-model qwen2.5-7b:mem-v1 --out s3://bucket/trajectories --run-id nh-0001
    automem rollout --resume --run-id nh-0001 --out s3://bucket/trajectories   # after a crash or Ctrl-C
    ray job submit --working-dir . -- automem rollout --env crafter-v0 --episodes 64 --out s3://bucket/t

Everything is validated (scaffold, env id, seeds, output root) before any episode starts. A resume reads what
to play (env, episodes, seeds, scaffold, models, step cap) from the run's manifest; passing one of those with
another value is an error, while the rest (concurrency, endpoint, runners, limits) may change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any


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
    p.add_argument("--env", default=None, help="environment id (`automem env list`); default crafter-v0")
    p.add_argument("--episodes", type=int, default=None, help="number of episodes (default 8)")
    p.add_argument("--concurrency", type=int, default=8, help="episodes in flight at once (default 8)")
    p.add_argument(
        "--runners", type=int, default=None, help="runner actors (default: concurrency/64, at least 1)"
    )
    p.add_argument("--scaffold", default=None, help="scaffold name or YAML file (default: <env family>-v0)")
    p.add_argument("--model", default=None, help="model that commits actions (default smollm2-135m)")
    p.add_argument(
        "--memory-model", default=None, help="model for memory turns, e.g. BASE:ADAPTER (default: --model)"
    )
    p.add_argument(
        "--endpoint",
        default=None,
        help="OpenAI-compatible base URL, or 'embedded' to use (or start) the embedded endpoint (default; a "
        "resume uses the run's endpoint)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="step cap per episode (default 30)")
    p.add_argument("--seeds", default=None, help="seed list: '1,5,9', '0-99' or a mix (default 0-999)")
    p.add_argument("--run-id", default=None, help="run id (default: <env>-<UTC time>); needed for --resume")
    p.add_argument(
        "--out", default="runs", help="storage root: a folder or s3://bucket/prefix (default ./runs)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue run --run-id (its episodes, seeds, scaffold and models come from its manifest), "
        "skipping committed episodes",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --resume: take over the run even if another driver's heartbeat looks alive",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="attempts per episode in this invocation before giving up; a resume gives failed episodes this "
        "many again (default 3)",
    )
    p.add_argument(
        "--max-llm-inflight",
        type=int,
        default=256,
        help="model requests in flight at once over all runners: backpressure on the endpoint (default 256)",
    )
    p.add_argument(
        "--episode-timeout",
        type=float,
        default=None,
        help="seconds one episode attempt may take before it fails and is retried (default: no limit)",
    )
    p.add_argument(
        "--retry-backoff",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait before an episode's first retry, doubled for each further one, with jitter (default 10)",
    )
    p.add_argument(
        "--placement-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for runners to be placed on a cluster that can add nodes (default 600)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, a running local one, or new)",
    )
    p.add_argument(
        "--runner-resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a custom Ray resource each runner actor requests, e.g. rollout=0.01 to place runners on "
        "ray_cluster.yaml's rollout nodes (repeatable)",
    )
    p.add_argument("--context-window", type=int, default=4096, help="the served model's context length")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (logs one line per ~10 s instead)"
    )


def _fail(msg: str) -> int:
    print(f"automem rollout: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Validate, connect, run, summarise."""
    from automem import env_vars
    from automem.llm.tokens import HFTokenCounter
    from automem.rollout import RunnerConfig, make_jobs, parse_seeds
    from automem.rollout.checks import check_context_window, check_scaffold_fits, check_timeout
    from automem.rollout.jobs import MAX_EPISODES
    from automem.rollout.resume import JOB_DEFAULTS, job_settings, next_attempts, parse_resources
    from automem.scaffold import ScaffoldError, content_id, from_yaml, load, to_yaml
    from automem.trajectory import (
        RunBusy,
        RunLease,
        Storage,
        StorageError,
        check_id,
        read_manifest,
        repair,
    )
    from automem.trajectory.runs import LeaseLost, committed_attempts, write_episode_index, write_manifest
    from automem.trajectory.storage import aws_credentials
    from pipelines._common import env_family, known_env_ids, resolve_endpoint

    # -- validate everything before anything starts ------------------------------------------------------------
    for name, value in (
        ("--episodes", args.episodes),
        ("--concurrency", args.concurrency),
        ("--max-steps", args.max_steps),
        ("--max-attempts", args.max_attempts),
        ("--max-llm-inflight", args.max_llm_inflight),
    ):
        if value is not None and value < 1:
            return _fail(f"{name} must be at least 1")
    if args.episodes is not None and args.episodes > MAX_EPISODES:
        return _fail(f"--episodes must be at most {MAX_EPISODES:,}; split larger work into several runs")
    try:
        check_timeout("--episode-timeout", args.episode_timeout)
        check_timeout("--retry-backoff", args.retry_backoff or None)
        check_timeout("--placement-timeout", args.placement_timeout)
        check_context_window(args.context_window)
    except ValueError as exc:
        return _fail(str(exc))
    if args.resume and not args.run_id:
        return _fail("--resume needs --run-id (the run to continue)")
    if args.force and not args.resume:
        return _fail("--force only applies to --resume")
    try:
        runner_resources = parse_resources(args.runner_resource)
    except ValueError as exc:
        return _fail(str(exc))
    env_arg = args.env or JOB_DEFAULTS["env"]
    run_id = args.run_id or f"{env_arg}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    try:
        check_id("run id", run_id)
        storage = Storage(args.out)
        storage.check()
        manifest = read_manifest(storage, run_id)
    except (ValueError, StorageError) as exc:
        return _fail(str(exc))
    if manifest and not args.resume:
        return _fail(
            f"run {run_id!r} already exists in {args.out}; pass --resume to continue it or pick a new --run-id"
        )
    if args.resume and not manifest:
        return _fail(f"nothing to resume: no run {run_id!r} in {args.out}")
    try:
        job = job_settings({k: getattr(args, k) for k in JOB_DEFAULTS}, manifest)
        if job["env"] not in known_env_ids():
            return _fail(f"unknown env id {job['env']!r}; known: {', '.join(known_env_ids())}")
        if manifest and manifest.get("scaffold_yaml"):
            scaffold = from_yaml(manifest["scaffold_yaml"], f"the manifest of run {run_id}")
            if args.scaffold and content_id(load(args.scaffold)) != content_id(scaffold):
                return _fail(
                    f"--scaffold {args.scaffold} differs from the scaffold run {run_id} was started with"
                )
        else:
            scaffold = load(job["scaffold"] or f"{env_family(job['env'])}-v0")
        seeds = parse_seeds(job["seeds"])
        # A scaffold whose prompt cannot fit would fail every attempt: refuse it now (a generous estimate here;
        # again with the served model's tokenizer once the endpoint is known).
        check_scaffold_fits(scaffold, job["env"], args.context_window)
    except (ScaffoldError, ValueError) as exc:
        return _fail(str(exc))
    memory_model = job["memory_model"] or job["model"]
    jobs = make_jobs(
        run_id=run_id,
        env_id=job["env"],
        episodes=job["episodes"],
        seeds=seeds,
        scaffold=scaffold,
        memory_model=memory_model,
        action_model=job["model"],
        max_steps=job["max_steps"],
    )
    lease = RunLease(storage, run_id)
    try:
        lease.acquire(force=args.force)
    except RunBusy as exc:
        return _fail(f"run {run_id}: {exc}")
    skipped = 0
    if args.resume:
        next_attempt = next_attempts(storage, run_id)  # every number used: attempts rows and staged claims
        done = committed_attempts(storage, run_id)  # episode -> the attempt its record is of
        removed = repair(storage, run_id, done)
        kept = []
        for j in jobs:
            if j.episode_id in done:
                continue
            kept.append(_with_attempt(j, next_attempt[j.episode_id]) if j.episode_id in next_attempt else j)
        skipped, jobs = len(jobs) - len(kept), kept
        print(
            f"resuming {run_id}: {skipped} episodes already committed, {len(jobs)} to run "
            f"(removed {removed['orphan_files'] + removed['temp_files']} orphaned files, recorded "
            f"{removed['interrupted']} interrupted attempts, finished {removed['rolled_forward']} cut commits)",
            file=sys.stderr,
        )
        if not jobs:
            lease.release()
            print(f"run {run_id} is complete; nothing to do", file=sys.stderr)
            return 0

    # -- connect: endpoint, Ray --------------------------------------------------------------------------------
    # A resume talks to the endpoint the run was started with unless told otherwise.
    endpoint_spec = args.endpoint or (manifest or {}).get("config", {}).get("endpoint") or "embedded"
    from actors.cluster import connect_ray, placeable
    from actors.scheduler import RolloutScheduler, RunnersFailing, StorageFailing

    try:
        endpoint, tokenizer_dir = resolve_endpoint(endpoint_spec)
        if tokenizer_dir:  # the exact check, with the served model's tokenizer
            check_scaffold_fits(
                scaffold, job["env"], args.context_window, HFTokenCounter.from_model_dir(tokenizer_dir)
            )
        conn = connect_ray(args.address)
        if runner_resources and not placeable({"CPU": 0.5, **runner_resources}):
            wanted = ", ".join(f"{k}={v:g}" for k, v in runner_resources.items())
            if conn.started:  # a cluster this process just started has no autoscaler to add a node
                raise RuntimeError(f"no node of the local cluster has the runner resource {wanted}")
            print(
                f"automem rollout: no node has the runner resource {wanted} now; waiting up to "
                f"{args.placement_timeout:.0f} s for one (an autoscaler adding a node; --placement-timeout)",
                file=sys.stderr,
            )
    except (RuntimeError, ValueError, ConnectionError) as exc:
        _abandon(storage, run_id, lease, new_run=not args.resume)
        return _fail(str(exc))

    actor_env = env_vars.forwarded(env_vars.AWS_ENDPOINT_URL, env_vars.AUTOMEM_API_KEY)
    actor_env.update(aws_credentials())
    print(f"ray: {conn.how}; endpoint {endpoint}; writing to {args.out} (run {run_id})", file=sys.stderr)
    if not args.resume:
        try:
            write_manifest(
                storage,
                run_id,
                {
                    "config": {
                        **{k: v for k, v in vars(args).items() if k != "func"},
                        **job,
                        "endpoint": endpoint_spec,
                    },
                    "env_id": job["env"],
                    "scaffold_id": scaffold.id,
                    "scaffold_content_id": content_id(scaffold),
                    "scaffold_yaml": to_yaml(scaffold),
                    "models": {"action": job["model"], "memory": memory_model},
                    "endpoint": endpoint,
                    "seeds": sorted({j.seed for j in jobs}),
                    "episodes": job["episodes"],
                },
            )
        except StorageError as exc:
            _abandon(storage, run_id, lease, new_run=True)
            return _fail(f"could not write the run's manifest: {exc}")
    config = RunnerConfig(
        endpoint=endpoint,
        storage_root=args.out,
        context_window=args.context_window,
        tokenizer_dir=tokenizer_dir,
        episode_timeout_s=args.episode_timeout,
    )
    runners = args.runners or max(1, min(args.concurrency // 64 + 1, 16))
    reporter = _Reporter(len(jobs), quiet=args.no_progress)

    def on_progress(stats: dict[str, Any]) -> None:
        reporter.update(stats)
        try:
            lease.renew()
        except StorageError:  # a bucket outage; the writes themselves retry
            pass

    scheduler = RolloutScheduler(
        jobs,
        config,
        num_runners=runners,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        on_progress=on_progress,
        runner_env=actor_env or None,
        max_llm_inflight=args.max_llm_inflight,
        runner_resources=runner_resources or None,
        retry_backoff_s=args.retry_backoff,
        placement_timeout_s=args.placement_timeout,
    )
    try:
        with reporter:
            result = scheduler.run()
    except LeaseLost as exc:  # another driver took the run over (--force): it carries on, this one stops
        print(f"automem rollout: run {run_id}: {exc}", file=sys.stderr)
        return 1
    except (RunnersFailing, StorageFailing) as exc:
        print(f"automem rollout: {exc}", file=sys.stderr)
        print(
            f"committed episodes are kept; after fixing it, continue with:\n"
            f"  automem rollout --resume --run-id {run_id} --out {args.out}",
            file=sys.stderr,
        )
        return 1
    finally:
        try:
            # The run's records in one file, so queries need not read one file per episode.
            write_episode_index(storage, run_id)
            lease.release()
        except StorageError as exc:
            print(
                f"automem rollout: could not write the episode index or release the lease: {exc}",
                file=sys.stderr,
            )
    _summary(result, run_id, args.out, skipped, scheduler.progress())
    if endpoint_spec == "embedded":
        _say_embedded_still_running(endpoint)
    if result.interrupted:
        print(
            f"\ninterrupted: committed episodes are kept. Continue with:\n"
            f"  automem rollout --resume --run-id {run_id} --out {args.out}",
            file=sys.stderr,
        )
        return 130
    return 0 if not result.failed else 1


def _abandon(storage, run_id: str, lease, *, new_run: bool) -> None:
    """A start that failed after taking the lease: release it, and leave no trace of a run that never began."""
    try:
        lease.release()
        if new_run:
            storage.delete_dir(storage.path("runs", run_id))
            if not storage.is_s3 and not os.listdir(storage.path("runs")):
                os.rmdir(storage.path("runs"))  # nothing else was ever there
    except Exception as exc:  # noqa: BLE001 - best effort; the failure being reported matters more
        print(f"automem rollout: could not clean up run {run_id}: {exc}", file=sys.stderr)


def _say_embedded_still_running(url: str) -> None:
    """The embedded endpoint outlives the rollout (the next one starts at once); say so, and how to stop it."""
    from automem.serving.local_s3 import pid_alive
    from automem.serving.state import read_state

    state = read_state()
    if state is None or not pid_alive(state.pid):
        return
    print(
        f"\nthe embedded model endpoint is still running at {url} (about 4 GB; it keeps the cores busy while it "
        "serves). Stop it with: automem serve --stop",
        file=sys.stderr,
    )


def _with_attempt(job, attempt: int):
    from dataclasses import replace

    return replace(job, attempt=attempt)


class _Reporter:
    """A rich progress bar in a terminal; a log line every ~10 s otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.tty = sys.stderr.isatty() and not quiet
        self.last_line = 0.0
        self.progress: Any = None

    def __enter__(self):
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]episodes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("rollout", total=self.total, info="starting")
        return self

    def update(self, s: dict[str, Any]) -> None:
        info = (
            f"failed {s['failed']} · running {s['running']} · {s['steps_per_s']:.1f} steps/s · "
            f"{s['tokens_per_s']:.0f} tok/s · progression {s['mean_progression']:.3f}"
        )
        if self.progress is not None:
            self.progress.update(self.task, completed=s["done"] + s["failed"], info=info)
            return
        import time

        if time.monotonic() - self.last_line > 10 or s["done"] + s["failed"] == self.total:
            self.last_line = time.monotonic()
            print(f"episodes {s['done'] + s['failed']}/{self.total} · {info}", file=sys.stderr)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _summary(result, run_id: str, out: str, skipped: int, prog: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    done = result.done
    steps = sum(d["steps"] for d in done)
    tokens = sum(d["tokens"] for d in done)
    mean = sum(d["progression"] for d in done) / len(done) if done else 0.0
    wall = max(result.wall_seconds, 1e-9)
    table = Table(title=f"rollout {run_id}", show_header=False)
    for k, v in [
        ("episodes committed", f"{len(done)}" + (f" (+{skipped} before resume)" if skipped else "")),
        ("episodes failed", str(len(result.failed))),
        ("attempts / runner restarts", f"{result.attempts} / {result.runner_restarts}"),
        ("steps", str(steps)),
        ("mean progression", f"{mean:.3f}"),
        ("steps/s", f"{steps / wall:.2f}"),
        ("tokens/s", f"{tokens / wall:.0f}"),
        ("wall time", f"{wall:.1f} s"),
        ("data", f"{out}/tables/<table>/{run_id}/"),
    ]:
        table.add_row(k, v)
    Console(stderr=False).print(table)
    for eid, err in list(result.failed.items())[:5]:
        print(f"failed {eid}: {err}", file=sys.stderr)
    print(f'query it: automem query {out} "SELECT env_id, avg(progression) FROM episodes GROUP BY 1"')
