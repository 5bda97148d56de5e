"""The episode runner: plays many episodes concurrently in one event loop and writes each to the store.

This is the domain class; ``actors/runner.py`` only makes it a Ray actor. It never imports Ray, so it is
tested directly with a scripted model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

from automem.agent.agent import Agent, ModelRoute
from automem.branch.start import branch_start
from automem.envs.base import TextEnv
from automem.llm.client import OpenAIChatClient
from automem.llm.protocol import DEFAULT_SAMPLING, ChatModel, ChatResult, OutputConstraint, SamplingParams
from automem.llm.tokens import ApproxTokenCounter, HFTokenCounter, TokenCounter
from automem.metrics import (
    EPISODES_COMMITTED,
    EPISODES_FAILED,
    LLM_ERRORS,
    LLM_INFLIGHT,
    LLM_LATENCY,
    LLM_TOKENS,
    MEMORY_OP_ERRORS,
    NO_METRICS,
    PROGRESSION,
    STEPS,
    MetricsSink,
)
from automem.rollout.jobs import EpisodeJob
from automem.rollout.outcomes import EpisodeOutcome
from automem.scaffold.io import content_id
from automem.trajectory.storage import Storage
from automem.trajectory.writer import AlreadyCommitted, EpisodeWriter


@dataclass(frozen=True)
class RunnerConfig:
    """How a runner reaches the model and the store."""

    endpoint: str
    """Base URL of the OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8000/v1``."""
    storage_root: str
    """Where trajectories go: a folder or ``s3://bucket/prefix``."""
    api_key: str | None = None
    """Bearer token for the endpoint (None: ``AUTOMEM_API_KEY``)."""
    max_llm_inflight: int = 64
    """Most model requests this runner has open at once (backpressure on the endpoint)."""
    context_window: int = 4096
    """The served model's context length."""
    tokenizer_dir: str | None = None
    """A model folder with ``tokenizer.json`` for exact prompt budgets; an estimate when None."""
    request_timeout_s: float = 120.0
    """Per-request timeout."""
    request_retries: int = 4
    """Retries of a failed request (5xx, 429, connection errors) before the episode fails."""
    flush_rows: int = 512
    """Rows buffered per episode before a Parquet part is written."""
    storage_retry_s: float = 300.0
    """How long a storage write keeps retrying (e.g. while a bucket is unreachable)."""
    episode_timeout_s: float | None = None
    """Wall-clock limit of one attempt (a hung game step or model call fails it, to be retried); None: none."""


class LimitedChatModel:
    """Caps the requests in flight through one client (backpressure on the endpoint), and meters them."""

    def __init__(self, inner: ChatModel, limit: int, metrics: MetricsSink = NO_METRICS) -> None:
        self.inner = inner
        self.sem = asyncio.Semaphore(limit)
        self.inflight = 0
        self.metrics = metrics

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        constraint: OutputConstraint | None = None,
    ) -> ChatResult:
        async with self.sem:
            self.inflight += 1
            self.metrics.set(LLM_INFLIGHT, self.inflight)
            t0 = time.perf_counter()
            try:
                result = await self.inner.chat(
                    messages, model=model, sampling=sampling, constraint=constraint
                )
            except Exception:
                self.metrics.inc(LLM_ERRORS, tags={"model": model})
                raise
            finally:
                self.inflight -= 1
                self.metrics.set(LLM_INFLIGHT, self.inflight)
            self.metrics.observe(LLM_LATENCY, time.perf_counter() - t0, {"model": model})
            self.metrics.inc(LLM_TOKENS, result.prompt_tokens, {"model": model, "kind": "prompt"})
            self.metrics.inc(LLM_TOKENS, result.completion_tokens, {"model": model, "kind": "completion"})
            return result


class EpisodeRunner:
    """Runs episode jobs; each ``run`` call plays one episode and commits it (or records its failure).

    Args:
        config: endpoint, store and limits.
        client: a chat model to use instead of an HTTP client (tests).
        metrics: where episodes, steps, model requests and commits are counted (``actors/runner.py`` passes Ray's).
    """

    def __init__(
        self, config: RunnerConfig, client: ChatModel | None = None, metrics: MetricsSink = NO_METRICS
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        base = client or OpenAIChatClient(
            config.endpoint,
            api_key=config.api_key,
            timeout_s=config.request_timeout_s,
            max_retries=config.request_retries,
        )
        self.client = LimitedChatModel(base, config.max_llm_inflight, metrics)
        self.storage = Storage(config.storage_root, retry_for_s=config.storage_retry_s)
        self.counter: TokenCounter = (
            HFTokenCounter.from_model_dir(config.tokenizer_dir)
            if config.tokenizer_dir
            else ApproxTokenCounter()
        )
        self.memory_base = tempfile.mkdtemp(prefix="automem-mem-")
        self.stats_ = {"episodes_done": 0, "episodes_failed": 0, "steps": 0, "tokens": 0, "running": 0}

    def stats(self) -> dict[str, Any]:
        """Counters for progress reporting."""
        return {**self.stats_, "llm_inflight": self.client.inflight}

    async def run(self, job: EpisodeJob) -> EpisodeOutcome:
        """Play and commit one episode; returns its summary.

        Raises:
            Exception: whatever ended the attempt (after it was recorded in ``attempts``); the scheduler decides
                whether to retry.
        """
        from automem.envs import make_env  # the registry imports game packages lazily

        meta = {
            "env_id": job.env_id,
            "seed": job.seed,
            "scaffold_id": job.scaffold.id,
            "scaffold_content_id": content_id(job.scaffold),
            "memory_model": job.memory_model,
            "action_model": job.action_model,
            "worker": self.worker,
        }
        writer = EpisodeWriter(
            self.storage,
            job.run_id,
            job.episode_id,
            job.attempt,
            meta,
            flush_rows=self.config.flush_rows,
            metrics=self.metrics,
        )
        tags = {"run_id": job.run_id, "env": job.env_id}
        memory_root = os.path.join(self.memory_base, f"{job.run_id}-{job.episode_id}-a{job.attempt}")
        # A retry of an episode that did commit (its runner died after the commit, or its result was lost) is
        # answered from the store, never played again.
        done = await asyncio.to_thread(writer.committed_record)
        if done is not None:
            return self._already(job, done)
        # Hold the attempt number before playing; AttemptTaken (another writer has it) leaves that writer's
        # files alone and fails this task, which the scheduler retries as the next attempt.
        await asyncio.to_thread(writer.claim)
        self.stats_["running"] += 1
        env: TextEnv | None = None
        try:
            start = None
            if job.branch is None:
                game = await asyncio.to_thread(make_env, job.env_id, **job.env_kwargs)
            else:  # a branch: the stored episode's game and memory at the branch step (automem.branch)
                game, start = await asyncio.to_thread(branch_start, job.branch)
            env = game
            agent = Agent(
                job.scaffold,
                memory=ModelRoute(self.client, job.memory_model),
                action=ModelRoute(self.client, job.action_model),
                counter=self.counter,
                context_window=self.config.context_window,
                env_in_thread=True,
                sampling_seed=None if job.branch is None else job.branch.sampling_seed,
            )

            def on_event(event: Any) -> None:
                writer.on_event(event)
                if getattr(event, "completion_tokens", None) is not None and hasattr(event, "phase"):
                    self.stats_["tokens"] += event.prompt_tokens + event.completion_tokens
                    op_errors = sum(1 for r in event.results if not r.get("ok", True))
                    if op_errors:
                        self.metrics.inc(MEMORY_OP_ERRORS, op_errors, tags)

            async def after_step() -> None:
                self.stats_["steps"] += 1
                self.metrics.inc(STEPS, tags=tags)
                if writer.should_flush():
                    await asyncio.to_thread(writer.write, writer.take())

            t0 = time.perf_counter()
            episode = agent.run_episode(
                game,
                seed=job.seed,
                episode_id=job.episode_id,
                memory_root=memory_root,
                max_steps=job.max_steps,
                on_event=on_event,
                after_step=after_step,
                start=start,
            )
            try:
                end = await asyncio.wait_for(episode, self.config.episode_timeout_s)
            except TimeoutError:
                raise TimeoutError(
                    f"episode attempt exceeded {self.config.episode_timeout_s:g} s (episode_timeout_s)"
                ) from None
            try:
                await asyncio.to_thread(writer.commit, end, agent.system_prompt(game))
            except AlreadyCommitted as exc:  # another attempt committed while this one played
                return self._already(job, exc.record)
            self.stats_["episodes_done"] += 1
            self.metrics.inc(EPISODES_COMMITTED, tags=tags)
            self.metrics.observe(PROGRESSION, end.progression, tags)
            return EpisodeOutcome(
                episode_id=job.episode_id,
                attempt=job.attempt,
                steps=end.steps,
                progression=end.progression,
                episode_return=end.episode_return,
                tokens=end.prompt_tokens + end.completion_tokens,
                llm_seconds=end.llm_seconds,
                wall_seconds=time.perf_counter() - t0,
                bytes_written=writer.bytes_written,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats_["episodes_failed"] += 1
            self.metrics.inc(EPISODES_FAILED, tags=tags)
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
            try:
                await asyncio.to_thread(writer.fail, reason, self.worker)
            except Exception:  # the store itself is failing; the scheduler still sees the original error
                pass
            raise
        finally:
            self.stats_["running"] -= 1
            if env is not None:
                env.close()
            # Off the event loop: removing a folder is a few slow syscalls per file, and hundreds of episodes
            # ending together would stall every other episode's turn (seen: 1.5 s of loop time per 500).
            await asyncio.to_thread(shutil.rmtree, memory_root, True)

    def _already(self, job: EpisodeJob, row: dict[str, Any]) -> EpisodeOutcome:
        """The outcome of an episode found committed (its ``episodes`` row) instead of played."""
        self.stats_["episodes_done"] += 1
        return EpisodeOutcome(
            episode_id=job.episode_id,
            attempt=int(row.get("attempt", job.attempt)),
            steps=int(row.get("steps") or 0),
            progression=float(row.get("progression") or 0.0),
            episode_return=float(row.get("episode_return") or 0.0),
            tokens=int((row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)),
            llm_seconds=float(row.get("llm_seconds") or 0.0),
            wall_seconds=0.0,
            bytes_written=0,
            already_committed=True,
        )

    async def close(self) -> None:
        inner = self.client.inner
        if isinstance(inner, OpenAIChatClient):
            await inner.aclose()
        shutil.rmtree(self.memory_base, ignore_errors=True)
