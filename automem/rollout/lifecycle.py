"""``run_rollout``: the whole life of a rollout as one library call.

    from automem.rollout import RolloutConfig, run_rollout
    result = run_rollout(RolloutConfig(env="crafter-v0", episodes=4, max_steps=10, out="runs"))
    print(result.committed, result.failed, result.run_id)

In order: check everything that can be checked before anything is written (settings, the store, the scaffold
against the prompt budget), take the run's lease, plan a resume (skip committed episodes, number new attempts
above every used one, repair what a crashed driver left), reach the endpoint, prepare the executor (connect to
Ray, check the runners can be placed), write the manifest, execute, write the run's episode index, release the
lease. A start that fails after taking the lease leaves no trace of a run that never began.

The executor is a small protocol (:class:`Executor`): ``ray`` runs the episodes on runner actors
(``actors/executor.py``), ``local`` runs the same :class:`~automem.rollout.runner.EpisodeRunner` in this process
(``automem/rollout/local.py``; no Ray).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from automem.rollout.checks import check_scaffold_fits
from automem.rollout.config import RUN_FIELDS, RolloutConfig, rollout_config
from automem.rollout.jobs import EpisodeJob, make_jobs, parse_seeds
from automem.rollout.outcomes import EpisodeOutcome, ExecutionResult, Progress
from automem.rollout.resume import next_attempts
from automem.rollout.runner import RunnerConfig
from automem.scaffold.io import ScaffoldError, content_id, from_yaml, load, to_yaml
from automem.scaffold.schema import Scaffold
from automem.trajectory.reader import StoreFileError, read_manifest
from automem.trajectory.runs import (
    LeaseLost,
    RunBusy,
    RunLease,
    committed_attempts,
    repair,
    write_episode_index,
    write_manifest,
)
from automem.trajectory.storage import Storage, StorageError

log = logging.getLogger(__name__)

EXECUTORS = {"ray": "actors.executor:RayExecutor", "local": "automem.rollout.local:LocalExecutor"}
"""Executors by name, imported when first used (the library itself imports no Ray)."""


class RolloutError(ValueError):
    """The rollout cannot start as configured; nothing was written. The message says what to change."""


class Executor(Protocol):
    """Runs episode jobs to an outcome each."""

    def prepare(self, config: RolloutConfig) -> str:
        """Get ready to run (connect, check placement); return a line saying where the episodes will run.

        Raises:
            RolloutError: the episodes cannot run there (e.g. no node has the runners' resources).
        """
        ...

    def execute(
        self,
        jobs: list[EpisodeJob],
        runner: RunnerConfig,
        config: RolloutConfig,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionResult:
        """Play every job (retrying as ``config`` says); Ctrl-C ends it with ``interrupted`` set."""
        ...


def get_executor(name: str) -> Executor:
    """An executor by name (``ray`` or ``local``)."""
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


@dataclass
class RolloutResult:
    """What a rollout did."""

    run_id: str
    out: str
    committed: int
    """Episodes committed by this invocation."""
    skipped: int
    """Episodes a resume found committed already."""
    failed: dict[str, str]
    """Episode id -> the last error, for episodes given up."""
    interrupted: bool
    attempts: int
    runner_restarts: int
    wall_seconds: float
    endpoint: str
    endpoint_spec: str
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    retry_wait_seconds: float = 0.0

    @property
    def steps(self) -> int:
        return sum(e.steps for e in self.episodes)

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.episodes)

    @property
    def mean_progression(self) -> float:
        return sum(e.progression for e in self.episodes) / len(self.episodes) if self.episodes else 0.0


@dataclass
class _Plan:
    """A checked rollout, before anything is written."""

    config: RolloutConfig  # the effective config: a resume's run fields come from its manifest
    storage: Storage
    manifest: dict[str, Any] | None
    scaffold: Scaffold
    jobs: list[EpisodeJob]


def _resolve_scaffold(config: RolloutConfig) -> Scaffold:
    if isinstance(config.scaffold, Scaffold):
        return config.scaffold
    return load(config.scaffold or f"{_env_family(config.env)}-v0")


def _env_family(env_id: str) -> str:
    """``crafter``, ``minihack`` or ``nethack`` (scaffolds are written per family)."""
    return next((f for f in ("minihack", "nethack") if env_id.startswith(f)), "crafter")


def _stored_config(manifest: dict[str, Any], run_id: str) -> RolloutConfig:
    """The config a run was started with (older manifests stored the CLI's flags: their run fields are read)."""
    stored = manifest.get("config", {})
    if "executor" in stored:  # written from a RolloutConfig
        return rollout_config(stored, f"the manifest of run {run_id}")
    known = {k: stored[k] for k in (*RUN_FIELDS, "endpoint") if stored.get(k) is not None}
    if "env" not in known and manifest.get("env_id"):
        known["env"] = manifest["env_id"]
    return rollout_config(known, f"the manifest of run {run_id}")


def _resume_config(
    given: RolloutConfig, manifest: dict[str, Any], run_id: str
) -> tuple[RolloutConfig, Scaffold]:
    """``given`` with the run's fields taken from the manifest; a run field given with another value is refused."""
    stored = _stored_config(manifest, run_id)
    scaffold = (
        from_yaml(manifest["scaffold_yaml"], f"the manifest of run {run_id}")
        if manifest.get("scaffold_yaml")
        else _resolve_scaffold(stored)
    )
    for key in RUN_FIELDS:
        if key not in given.model_fields_set:
            continue
        now, before = getattr(given, key), getattr(stored, key)
        if key == "scaffold":
            if now is not None and content_id(_resolve_scaffold(given)) != content_id(scaffold):
                raise RolloutError(f"scaffold {now} differs from the scaffold run {run_id} was started with")
        elif now != before:
            flag = "--" + key.replace("_", "-")
            raise RolloutError(
                f"{flag} {now!r} differs from the run's {before!r}; a resume keeps the run's {key}"
            )
    updates = {k: getattr(stored, k) for k in RUN_FIELDS}
    if "endpoint" not in given.model_fields_set:
        updates["endpoint"] = stored.endpoint  # the run's own endpoint unless told otherwise
    return given.model_copy(update=updates), scaffold


def default_run_id(config: RolloutConfig) -> str:
    """``<env>-<UTC time>``, the id of a run started without one."""
    return f"{config.env}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"


def _branch_jobs(config: RolloutConfig, run_id: str) -> tuple[RolloutConfig, list[EpisodeJob]]:
    """A branch run's jobs (``automem.branch``), and the config with its env, episode count and resolved plan."""
    from automem.branch.jobs import make_branch_jobs
    from automem.branch.restore import RestoreError
    from automem.trajectory.store import StoreError

    assert config.branch is not None
    try:
        env_id, jobs, plan = make_branch_jobs(config.branch, run_id=run_id, horizon=config.max_steps)
    except (RestoreError, StoreError) as exc:
        raise RolloutError(str(exc)) from None
    if "env" in config.model_fields_set and config.env != env_id:
        raise RolloutError(f"--env {config.env} differs from the branched episodes' env {env_id}")
    return config.model_copy(update={"env": env_id, "episodes": len(jobs), "branch": plan}), jobs


def _scaffolds(jobs: list[EpisodeJob]) -> list[Scaffold]:
    """The distinct scaffolds of some jobs (a branch run's arms may differ); jobs share their arm's object, so each
    object is hashed once, not once per job."""
    objects = {id(j.scaffold): j.scaffold for j in jobs}.values()
    return list({content_id(s): s for s in objects}.values())


def plan_rollout(config: RolloutConfig, *, resume: bool = False) -> _Plan:
    """Check everything that can be checked before anything is written.

    Raises:
        RolloutError: what is wrong and what to change.
    """
    from automem.envs import list_envs

    if resume and not config.run_id:
        raise RolloutError("a resume needs the run id (--run-id) of the run to continue")
    run_id = config.run_id or default_run_id(config)
    try:
        storage = Storage(config.out)
        storage.check()
        manifest = read_manifest(storage, run_id)
    except StorageError as exc:
        raise RolloutError(str(exc)) from None
    if manifest and not resume:
        raise RolloutError(
            f"run {run_id!r} already exists in {config.out}; resume it (--resume) or pick a new run id"
        )
    if resume and not manifest:
        raise RolloutError(f"nothing to resume: no run {run_id!r} in {config.out}")
    try:
        if manifest:
            config, scaffold = _resume_config(config, manifest, run_id)
        else:
            scaffold = _resolve_scaffold(config)
        config = config.model_copy(update={"run_id": run_id})
        if (
            config.branch is not None
        ):  # the env and the scaffolds come from the branched episodes and the arms
            config, jobs = _branch_jobs(config, run_id)
            scaffold = jobs[0].scaffold
        known = [getattr(e, "id", str(e)) for e in list_envs()]
        if config.env not in known:
            raise RolloutError(f"unknown env id {config.env!r}; known: {', '.join(known)}")
        # A scaffold whose prompt cannot fit would fail every attempt: refuse it now (a generous estimate here;
        # again with the served model's tokenizer once the endpoint is known).
        for each in _scaffolds(jobs) if config.branch is not None else [scaffold]:
            check_scaffold_fits(each, config.env, config.context_window)
        if config.branch is None:
            jobs = make_jobs(
                run_id=run_id,
                env_id=config.env,
                episodes=config.episodes,
                seeds=parse_seeds(config.seeds),
                scaffold=scaffold,
                memory_model=config.memory_model or config.model,
                action_model=config.model,
                max_steps=config.max_steps,
            )
    except RolloutError:
        raise
    except (ScaffoldError, ValueError) as exc:
        raise RolloutError(str(exc)) from None
    return _Plan(config, storage, manifest, scaffold, jobs)


def run_rollout(
    config: RolloutConfig,
    executor: Executor | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Play ``config``'s episodes and store them; returns what happened.

    Args:
        config: the rollout.
        executor: where the episodes run (default: ``config.executor``'s).
        resume: continue the run ``config.run_id``: its episodes, seeds, scaffold and models come from its
            manifest; committed episodes are skipped.
        force: with ``resume``, take over the run even if another driver's heartbeat looks alive.
        on_progress: called about once a second while episodes run.
        say: where progress lines go (default: this module's logger).

    Raises:
        RolloutError: the rollout cannot start as configured (nothing was written).
        RunBusy: another live driver holds the run (``LeaseLost``, a subclass: another driver took it over
            while this one ran; this one stopped).
        RunFailed: the executor gave the run up (runners cannot start or be placed, the store cannot be
            written); committed episodes are kept and a resume continues.
    """
    say = say or log.info
    plan = plan_rollout(config, resume=resume)
    config, storage, run_id = plan.config, plan.storage, plan.config.run_id
    assert run_id is not None
    executor = executor or get_executor(config.executor)
    lease = RunLease(storage, run_id)
    lease.acquire(force=force)
    jobs, skipped = plan.jobs, 0
    try:
        if resume:
            jobs, skipped = _plan_resume(storage, run_id, jobs, say)
            if not jobs:
                say(f"run {run_id} is complete; nothing to do")
                lease.release()
                return _result(config, ExecutionResult(), skipped, "", "")
        endpoint, tokenizer_dir = _reach_endpoint(config, plan.scaffold, say)
        say(f"{executor.prepare(config)}; endpoint {endpoint}; writing to {config.out} (run {run_id})")
        if not resume:
            _write_manifest(storage, config, plan, endpoint)
    except BaseException:
        _abandon(storage, run_id, lease, new_run=not resume)
        raise
    runner = RunnerConfig(
        endpoint=endpoint,
        storage_root=config.out,
        context_window=config.context_window,
        tokenizer_dir=tokenizer_dir,
        episode_timeout_s=config.episode_timeout,
    )

    def progress(p: Progress) -> None:
        if on_progress is not None:
            on_progress(p)
        try:
            lease.renew()
        except StorageError:  # a bucket outage; the writes themselves retry
            pass

    try:
        outcome = executor.execute(jobs, runner, config, progress)
    except LeaseLost:
        raise  # the run is another driver's now: leave its index and lease alone
    finally:
        if lease.generation is not None:
            try:
                write_episode_index(storage, run_id)  # the run's records in one file, for the readers
                lease.release()
            except (StorageError, StoreFileError) as exc:
                say(f"could not write the episode index or release the lease: {exc}")
    return _result(config, outcome, skipped, endpoint, config.endpoint)


def _plan_resume(
    storage: Storage, run_id: str, jobs: list[EpisodeJob], say: Callable[[str], None]
) -> tuple[list[EpisodeJob], int]:
    """The jobs a resume still has to play, each numbered above every attempt its episode used."""
    next_attempt = next_attempts(storage, run_id)  # every number used: attempts rows and staged claims
    done = committed_attempts(storage, run_id)  # episode -> the attempt its record is of
    removed = repair(storage, run_id, done)
    kept = [
        replace(j, attempt=next_attempt[j.episode_id]) if j.episode_id in next_attempt else j
        for j in jobs
        if j.episode_id not in done
    ]
    say(
        f"resuming {run_id}: {len(jobs) - len(kept)} episodes already committed, {len(kept)} to run "
        f"(removed {removed['orphan_files'] + removed['temp_files']} orphaned files, recorded "
        f"{removed['interrupted']} interrupted attempts, finished {removed['rolled_forward']} cut commits)"
    )
    return kept, len(jobs) - len(kept)


def _reach_endpoint(
    config: RolloutConfig, scaffold: Scaffold, say: Callable[[str], None]
) -> tuple[str, str | None]:
    """The endpoint's base URL and tokenizer folder; the scaffold checked again with that tokenizer."""
    from automem.llm.tokens import HFTokenCounter
    from automem.serving.endpoint import EndpointError, resolve_endpoint

    try:
        endpoint, tokenizer_dir = resolve_endpoint(config.endpoint, say)
        if tokenizer_dir:
            counter = HFTokenCounter.from_model_dir(tokenizer_dir)
            for each in (
                [scaffold, *(a.scaffold for a in config.branch.arms if a.scaffold)]
                if config.branch
                else [scaffold]
            ):
                check_scaffold_fits(each, config.env, config.context_window, counter)
    except (EndpointError, ValueError) as exc:
        raise RolloutError(str(exc)) from None
    return endpoint, tokenizer_dir


def _write_manifest(storage: Storage, config: RolloutConfig, plan: _Plan, endpoint: str) -> None:
    assert config.run_id is not None
    try:
        write_manifest(
            storage,
            config.run_id,
            {
                "config": config.model_dump(mode="json"),
                "env_id": config.env,
                "scaffold_id": plan.scaffold.id,
                "scaffold_content_id": content_id(plan.scaffold),
                "scaffold_yaml": to_yaml(plan.scaffold),
                "models": {"action": config.model, "memory": config.memory_model or config.model},
                "endpoint": endpoint,
                "seeds": sorted({j.seed for j in plan.jobs}),
                "episodes": config.episodes,
            },
        )
    except StorageError as exc:
        raise RolloutError(f"could not write the run's manifest: {exc}") from None


def _abandon(storage: Storage, run_id: str, lease: RunLease, *, new_run: bool) -> None:
    """A start that failed after taking the lease: release it, and leave no trace of a run that never began."""
    try:
        lease.release()
        if new_run:
            storage.delete_dir(storage.path("runs", run_id))
            for folder in ("runs", "_staging"):  # the lease's and the write probe's, if nothing else is there
                path = storage.path(folder)
                if not storage.is_s3 and os.path.isdir(path) and not os.listdir(path):
                    os.rmdir(path)
    except Exception as exc:  # noqa: BLE001 - best effort; the failure being reported matters more
        log.warning("could not clean up run %s: %s", run_id, exc)


def _result(
    config: RolloutConfig, outcome: ExecutionResult, skipped: int, endpoint: str, endpoint_spec: str
) -> RolloutResult:
    assert config.run_id is not None
    return RolloutResult(
        run_id=config.run_id,
        out=config.out,
        committed=len(outcome.done),
        skipped=skipped,
        failed=dict(outcome.failed),
        interrupted=outcome.interrupted,
        attempts=outcome.attempts,
        runner_restarts=outcome.runner_restarts,
        wall_seconds=outcome.wall_seconds,
        endpoint=endpoint,
        endpoint_spec=endpoint_spec,
        episodes=list(outcome.done),
        retry_wait_seconds=outcome.retry_wait_seconds,
    )


__all__ = [
    "EXECUTORS",
    "Executor",
    "RolloutError",
    "RolloutResult",
    "RunBusy",
    "get_executor",
    "plan_rollout",
    "run_rollout",
]
