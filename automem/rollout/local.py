"""The in-process executor: the same :class:`EpisodeRunner` the Ray actors run, on one asyncio event loop here.

For unit tests and small local runs; it imports no Ray. Episodes commit exactly as on Ray (same writer, same
commit protocol); retries follow the same :class:`RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from automem.llm.protocol import ChatModel
from automem.rollout.config import RolloutConfig
from automem.rollout.jobs import EpisodeJob
from automem.rollout.outcomes import ExecutionResult, Progress, RetryPolicy, StorageFailing
from automem.rollout.runner import EpisodeRunner, RunnerConfig
from automem.trajectory.storage import PermanentStorageError


class LocalExecutor:
    """Runs episodes in this process, ``config.concurrency`` at a time.

    Args:
        client: a chat model to use instead of the HTTP client (tests: a scripted model).
    """

    def __init__(self, client: ChatModel | None = None) -> None:
        self.client = client

    def prepare(self, config: RolloutConfig) -> str:
        return f"local: {config.concurrency} episodes at a time in this process"

    def execute(
        self,
        jobs: list[EpisodeJob],
        runner: RunnerConfig,
        config: RolloutConfig,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionResult:
        result = ExecutionResult()
        t0 = time.perf_counter()
        try:
            asyncio.run(self._run(jobs, runner, config, on_progress, result, t0))
        except KeyboardInterrupt:
            result.interrupted = True
        result.wall_seconds = time.perf_counter() - t0
        return result

    async def _run(
        self, jobs, runner_config, config, on_progress, result: ExecutionResult, t0: float
    ) -> None:
        runner = EpisodeRunner(replace(runner_config, max_llm_inflight=config.max_llm_inflight), self.client)
        policy = RetryPolicy(config.max_attempts, config.retry_backoff)
        queue: deque[EpisodeJob] = deque(jobs)
        running: dict[asyncio.Task, EpisodeJob] = {}
        last = 0.0
        try:
            while queue or running or policy.waiting():
                queue.extend(policy.due())
                while queue and len(running) < config.concurrency:
                    job = queue.popleft()
                    policy.dispatched(job)
                    result.attempts += 1
                    running[asyncio.create_task(runner.run(job))] = job
                if not running:
                    await asyncio.sleep(min(0.5, policy.next_due_in()) or 0.01)
                    continue
                done, _ = await asyncio.wait(running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    job = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        outcome = task.result()
                        result.done.append(outcome)
                        result.already_committed += outcome.already_committed
                    elif isinstance(exc, PermanentStorageError):
                        raise StorageFailing(str(exc)) from exc
                    elif not policy.retry(job):
                        result.failed[job.episode_id] = f"{type(exc).__name__}: {exc}"[:500]
                if on_progress is not None and time.perf_counter() - last > 1.0:
                    last = time.perf_counter()
                    on_progress(self._progress(len(jobs), result, runner, len(running), len(queue), t0))
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await runner.close()
            result.retry_wait_seconds = policy.waited_s
            if on_progress is not None:
                on_progress(self._progress(len(jobs), result, runner, 0, len(queue), t0))

    @staticmethod
    def _progress(total, result: ExecutionResult, runner: EpisodeRunner, running, queued, t0) -> Progress:
        stats = runner.stats()
        elapsed = max(1e-9, time.perf_counter() - t0)
        prog = [d.progression for d in result.done]
        return Progress(
            total=total,
            done=len(result.done),
            failed=len(result.failed),
            running=running,
            queued=queued,
            attempts=result.attempts,
            runner_restarts=0,
            llm_inflight=stats["llm_inflight"],
            steps=stats["steps"],
            tokens=stats["tokens"],
            steps_per_s=stats["steps"] / elapsed,
            tokens_per_s=stats["tokens"] / elapsed,
            mean_progression=sum(prog) / len(prog) if prog else 0.0,
            elapsed_s=elapsed,
        )
