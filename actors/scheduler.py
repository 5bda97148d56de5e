"""Fans episode jobs out to runner actors, with backpressure, retries, dead-runner replacement and progress.

The driver keeps at most ``concurrency`` episodes in flight, spread evenly over ``num_runners`` actors, and at
most ``max_llm_inflight`` model requests open in total (each runner gets its share). A failed episode (the
runner recorded why in ``attempts``) is retried as a new attempt up to ``max_attempts``. A dead actor (killed,
out of memory, node lost) is replaced; results it had already returned are collected first, and its other
in-flight episodes are recorded as failed attempts and re-run. Nothing is committed twice: a runner answers an
episode that is already committed from the store instead of playing it, and a commit never replaces another
attempt's committed record.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Any

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    RayError,
    RayTaskError,
)

from actors.runner import runner_actor
from automem.rollout.jobs import EpisodeJob
from automem.rollout.outcomes import (
    EpisodeOutcome,
    ExecutionResult,
    Progress,
    RetryPolicy,
    RunnersFailing,
    StorageFailing,
)
from automem.rollout.runner import RunnerConfig
from automem.trajectory.storage import PermanentStorageError, Storage
from automem.trajectory.writer import EpisodeWriter

# Ray's sentence on why an actor died, matched to a short cause (Ray 2.60 wording; the full text is kept after it).
_DEATH_CAUSES = (
    ("creation task", "its creation failed"),
    ("killed by `ray.kill`", "killed (ray.kill)"),
    ("memory monitor", "out of memory (Ray's memory monitor killed it)"),
    ("OutOfMemory", "out of memory (Ray's memory monitor killed it)"),
    ("node has died", "its node was lost"),
    ("node died", "its node was lost"),
    ("NODE_DIED", "its node was lost"),
    ("preempted", "its node was preempted"),
    ("INTENDED_USER_EXIT", "it exited on purpose"),
    (
        "connection error code 2",
        "its process was killed (SIGKILL: the kernel's OOM killer, `ray stop --force`, "
        "or a kill by hand) or crashed",
    ),
    ("exit detail", "its process exited unexpectedly"),
)


def _death_reason(exc: Exception) -> str:
    """Why a runner actor died: the cause Ray gives (killed, out of memory, node lost) first, then the gist of
    Ray's own text (the sentence that names the cause, not its generic preamble)."""
    text = " ".join(str(exc).split())
    cause = next((why for needle, why in _DEATH_CAUSES if needle in text), None)
    if getattr(exc, "_preempted", False):
        cause = "its node was preempted"
    m = re.search(r"The actor (?:is dead|died) because (.*)", text)
    detail = m.group(1) if m else text
    if len(detail) > 400:  # keep how the sentence starts and how Ray's text (or the actor's own error) ends
        detail = f"{detail[:150]} ... {detail[-250:]}"
    head = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
    return f"{head} ({detail})"


def _task_error(exc: RayTaskError) -> str:
    """The error that ended an episode task (its runner recorded it in ``attempts``)."""
    cause = exc.cause if exc.cause is not None else exc
    return f"{type(cause).__name__}: {cause}"[:500]


@dataclass
class _Runner:
    handle: Any
    index: int
    inflight: dict[Any, EpisodeJob] = field(default_factory=dict)  # ref -> job
    # Whether its first ``stats`` call (``probe``, while pending) answered: only then does it get episodes, so
    # that none wait behind an actor still waiting for a node (an autoscaler adds them one by one).
    ready: bool = False
    probe: Any = None


class RolloutScheduler:
    """Runs jobs on ``num_runners`` actors, at most ``concurrency`` episodes at once.

    Args:
        jobs: episodes to play (first attempts, or the attempts a resume starts from).
        config: passed to every runner.
        num_runners: actors to start.
        concurrency: episodes in flight in total.
        max_attempts: attempts per episode in this scheduler's run before it is given up (a resume starts from
            attempt numbers above 1 and still gets this many).
        on_progress: called about once a second with a :class:`Progress` (the CLI draws its progress bar from it).
        runner_env: environment variables for the actors (e.g. the S3 endpoint).
        runner_cpus: logical CPUs each runner actor reserves.
        max_llm_inflight: model requests open at once over all runners (None: each runner's
            ``config.max_llm_inflight``).
        runner_resources: custom resources each runner requests, e.g. ``{"rollout": 0.01}`` to place runners on
            the cluster's rollout nodes (``ray_cluster.yaml``).
        retry_backoff_s: wait before an episode's first retry, doubled for each further one (``RetryPolicy``),
            so an endpoint outage does not use up every attempt at once.
        placement_timeout_s: how long to wait for the first runner to be placed (an autoscaling cluster adding
            a node), or for any runner while none is placed (their nodes were lost), before the run fails with
            ``RunnersFailing``.

    With several runners the actors are spread over the nodes that can host them (Ray's ``SPREAD``), so that a
    lost node costs only its share of the episodes in flight.
    """

    def __init__(
        self,
        jobs: list[EpisodeJob],
        config: RunnerConfig,
        *,
        num_runners: int,
        concurrency: int,
        max_attempts: int = 3,
        on_progress: Callable[[Progress], None] | None = None,
        runner_env: dict[str, str] | None = None,
        runner_cpus: float = 0.5,
        max_llm_inflight: int | None = None,
        runner_resources: dict[str, float] | None = None,
        retry_backoff_s: float = 0.0,
        placement_timeout_s: float = 600.0,
    ) -> None:
        if not jobs:
            raise ValueError("no episodes to run")
        self.queue: deque[EpisodeJob] = deque(jobs)
        self.total = len(jobs)
        self.num_runners = max(1, min(num_runners, concurrency))
        if max_llm_inflight is not None:
            if max_llm_inflight < 1:
                raise ValueError("max_llm_inflight must be at least 1")
            self.num_runners = min(self.num_runners, max_llm_inflight)  # every runner needs one request
        self.max_llm_inflight = max_llm_inflight
        self.config = config
        self.per_runner = max(1, -(-concurrency // self.num_runners))
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.on_progress = on_progress
        self.runner_env = runner_env
        self.runner_cpus = runner_cpus
        self.runner_resources = runner_resources
        self.retry_backoff_s = retry_backoff_s
        self.placement_timeout_s = placement_timeout_s
        self.retries = RetryPolicy(max_attempts, retry_backoff_s)
        self.result = ExecutionResult()
        self.runners: list[_Runner] = []
        self._stats: dict[int, dict[str, Any]] = {}
        self._retired: dict[str, float] = {"steps": 0, "tokens": 0}  # counters of replaced runners
        # Deaths since the last finished episode: past a few per runner the cause is not transient (an actor
        # that cannot even be created, say) and replacing it again would loop forever.
        self._deaths_in_a_row = 0
        self.max_deaths_in_a_row = 3 * self.num_runners + 2
        self._none_ready_since: float | None = (
            None  # when the last ready runner was lost (None: one is ready)
        )

    def _runner_config(self, index: int) -> RunnerConfig:
        """Runner ``index``'s config: its share of the total in-flight request cap, if one is set."""
        if self.max_llm_inflight is None:
            return self.config
        share, extra = divmod(self.max_llm_inflight, self.num_runners)
        return dc_replace(self.config, max_llm_inflight=share + (index < extra))

    def _start_runner(self, index: int) -> _Runner:
        handle = runner_actor(
            concurrency=self.per_runner,
            num_cpus=self.runner_cpus,
            env_vars=self.runner_env,
            resources=self.runner_resources,
            scheduling_strategy="SPREAD" if self.num_runners > 1 else None,
        ).remote(self._runner_config(index))
        return _Runner(handle, index)

    def _check_probes(self, timeout: float) -> None:
        """Mark the runners whose first call answered as ready; replace one that died before it answered.

        Raises:
            RunnersFailing: a runner's creation failed (deterministic: an import error, a bad config), or runners
                keep dying before they answer.
        """
        for r in self.runners:
            if not r.ready and r.probe is None:
                r.probe = r.handle.stats.remote()
        probes = {r.probe: r for r in self.runners if not r.ready}
        done, _ = ray.wait(list(probes), num_returns=len(probes), timeout=timeout) if probes else ([], [])
        for ref in done:
            runner = probes[ref]
            try:
                ray.get(ref)
            except RayActorError as exc:
                if "creation task" in str(exc):  # deterministic: fail fast
                    raise RunnersFailing(f"a runner actor could not start: {_death_reason(exc)}") from exc
                self._runner_died(runner, exc)
                continue
            runner.ready, runner.probe = True, None
        if any(r.ready for r in self.runners):
            self._none_ready_since = None
        elif self._none_ready_since is None:
            self._none_ready_since = time.monotonic()

    def _check_placement(self) -> None:
        """Fail the run when no runner has been placed for ``placement_timeout_s`` (every node that hosted them
        is gone and none joins)."""
        since = self._none_ready_since
        if since is not None and time.monotonic() - since >= self.placement_timeout_s:
            wanted = {"CPU": self.runner_cpus, **(self.runner_resources or {})}
            raise RunnersFailing(
                f"no runner actor was placed within {self.placement_timeout_s:.0f} s: no node offers "
                f"{wanted}; add such a node, or change --runner-resource / --placement-timeout"
            )

    def _fill(self) -> None:
        self.queue.extend(self.retries.due())
        inflight = sum(len(r.inflight) for r in self.runners)
        ready = [r for r in self.runners if r.ready]
        for runner in sorted(ready, key=lambda r: len(r.inflight)):
            while self.queue and inflight < self.concurrency and len(runner.inflight) < self.per_runner:
                job = self.queue.popleft()
                runner.inflight[runner.handle.run.remote(job)] = job
                self.result.attempts += 1
                self.retries.dispatched(job)
                inflight += 1

    def _retry_or_give_up(self, job: EpisodeJob, error: str, *, backoff: bool = True) -> None:
        """Schedule the episode's next attempt (after its backoff), or give it up (``RetryPolicy``).

        ``backoff`` is False for attempts lost with their runner (the episode did nothing wrong)."""
        if not self.retries.retry(job, backoff=backoff):
            self.result.failed[job.episode_id] = error
        self.queue.extend(self.retries.due())  # a retry without backoff is queued at once

    def _collect(self, runner: _Runner, ref: Any) -> None:
        """Take the outcome of one finished episode task of ``runner``."""
        job = runner.inflight.pop(ref)
        try:
            summary = ray.get(ref)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            runner.inflight[ref] = job  # _replace handles every in-flight job of the dead actor
            self._runner_died(runner, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, PermanentStorageError):
                raise StorageFailing(str(exc.cause)) from exc
            self._retry_or_give_up(job, _task_error(exc))
            return
        except RayError as exc:  # e.g. the result object was lost with its node: play it again
            self._retry_or_give_up(job, f"{type(exc).__name__}: {exc}"[:500])
            return
        self._record(summary)

    def _record(self, outcome: EpisodeOutcome) -> None:
        """Count one finished episode."""
        self.result.already_committed += outcome.already_committed
        self.result.done.append(outcome)
        self._deaths_in_a_row = 0

    def _runner_died(self, runner: _Runner, exc: Exception) -> None:
        """Replace a dead runner, unless runners keep dying without finishing anything."""
        self._deaths_in_a_row += 1
        why = _death_reason(exc)
        if self._deaths_in_a_row > self.max_deaths_in_a_row:
            raise RunnersFailing(
                f"runner actors died {self._deaths_in_a_row} times in a row without finishing an episode; "
                f"last: {why}"
            ) from exc
        self._replace(runner, why)

    def _replace(self, runner: _Runner, error: str) -> None:
        """A runner died: keep what it had finished, record the rest as failed and re-queue it, start anew."""
        # Outcomes the actor returned before it died are in the object store: take them, not replay them.
        refs = list(runner.inflight)
        finished, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in finished:
            try:
                summary = ray.get(ref, timeout=0)
            except RayTaskError as exc:  # the episode failed, and the runner recorded why
                self._retry_or_give_up(runner.inflight.pop(ref), _task_error(exc))
                continue
            except Exception:  # the actor's death (or a lost result): failed below as "runner died"
                continue
            del runner.inflight[ref]
            self._record(summary)
        storage = Storage(self.config.storage_root, retry_for_s=self.config.storage_retry_s)
        for job in runner.inflight.values():
            try:
                EpisodeWriter(storage, job.run_id, job.episode_id, job.attempt, {}).fail(
                    f"runner died: {error}"
                )
            except Exception:  # storage trouble must not stop the run; the attempt simply has no record
                pass
            self._retry_or_give_up(job, f"runner died: {error}", backoff=False)
        runner.inflight.clear()
        try:
            ray.kill(runner.handle)
        except Exception:
            pass
        last = self._stats.pop(runner.index, {})
        for k in self._retired:
            self._retired[k] += last.get(k, 0)
        self.runners[self.runners.index(runner)] = self._start_runner(runner.index)
        self.result.runner_restarts += 1

    def _poll_stats(self) -> None:
        refs = {r.index: r.handle.stats.remote() for r in self.runners if r.ready}
        if not refs:
            return
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0.5)
        ready_set = set(ready)
        for idx, ref in refs.items():
            if ref in ready_set:
                try:
                    self._stats[idx] = ray.get(ref)
                except Exception:
                    pass

    def progress(self) -> Progress:
        done = self.result.done
        live_steps = self._retired["steps"] + sum(s.get("steps", 0) for s in self._stats.values())
        live_tokens = self._retired["tokens"] + sum(s.get("tokens", 0) for s in self._stats.values())
        elapsed = max(1e-9, time.perf_counter() - self._t0)
        prog = [d.progression for d in done]
        return Progress(
            total=self.total,
            done=len(done),
            failed=len(self.result.failed),
            running=sum(len(r.inflight) for r in self.runners),
            queued=len(self.queue) + self.retries.waiting(),
            attempts=self.result.attempts,
            runner_restarts=self.result.runner_restarts,
            llm_inflight=sum(s.get("llm_inflight", 0) for s in self._stats.values()),
            steps=live_steps,
            tokens=live_tokens,
            steps_per_s=live_steps / elapsed,
            tokens_per_s=live_tokens / elapsed,
            mean_progression=sum(prog) / len(prog) if prog else 0.0,
            elapsed_s=elapsed,
        )

    def start(self, all_within_s: float = 30.0) -> None:
        """Start the runner actors and wait until they answer (process start, imports, its model client).

        Waits for every runner up to ``all_within_s``; after that, one that answers is enough (the others get
        episodes as they answer: an autoscaling cluster adds their nodes one by one), and with none by
        ``placement_timeout_s`` the run fails. ``run`` calls it with ``all_within_s=0`` (episodes start on the
        first runner that answers) when it was not called before; calling it first keeps actor start-up out of
        ``run``'s timing (the benchmarks do).

        Raises:
            RunnersFailing: a runner could not be created (its creation error is in the message), or none was
                placed within ``placement_timeout_s``.
        """
        if self.runners:
            return
        self.runners = [self._start_runner(i) for i in range(self.num_runners)]
        t0 = time.monotonic()
        self._none_ready_since = t0
        while True:
            self._check_probes(timeout=1.0)
            ready = sum(r.ready for r in self.runners)
            if ready == len(self.runners) or (ready and time.monotonic() - t0 >= all_within_s):
                return
            self._check_placement()

    def run(self) -> ExecutionResult:
        """Run every job to an outcome; Ctrl-C stops cleanly (committed episodes stay, the rest can resume)."""
        self.start(all_within_s=0.0)
        self._t0 = time.perf_counter()
        last_progress = 0.0
        try:
            while self.queue or self.retries.waiting() or any(r.inflight for r in self.runners):
                self._check_probes(timeout=0)
                self._check_placement()
                self._fill()
                refs = [ref for r in self.runners for ref in r.inflight]
                if not refs:  # only retries waiting out their backoff
                    time.sleep(min(0.5, self.retries.next_due_in()) or 0.05)
                ready, rest = ray.wait(refs, num_returns=1, timeout=0.5) if refs else ([], [])
                if ready and rest:  # take every result that is ready, not one per loop
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in ready:
                    runner = next((r for r in self.runners if ref in r.inflight), None)
                    if runner is None:  # its actor died and was replaced while we handled another ref
                        continue
                    self._collect(runner, ref)
                now = time.perf_counter()
                if self.on_progress and now - last_progress > 1.0:
                    self._poll_stats()
                    self.on_progress(self.progress())
                    last_progress = now
        except KeyboardInterrupt:
            self.result.interrupted = True
        finally:
            self.result.wall_seconds = time.perf_counter() - self._t0
            self.result.retry_wait_seconds = self.retries.waited_s
            if self.on_progress:
                self._poll_stats()
                self.on_progress(self.progress())
            for r in self.runners:
                try:
                    ray.kill(r.handle)
                except Exception:
                    pass
        return self.result
