"""The Ray executor: a rollout's episodes on runner actors (``RolloutScheduler``), on the cluster ``config.address``
names (or a running local one, or a new one)."""

from __future__ import annotations

from collections.abc import Callable

from actors.cluster import connect_ray, placeable
from actors.scheduler import RolloutScheduler, RunnersFailing, StorageFailing
from automem import env_vars
from automem.rollout.config import RolloutConfig
from automem.rollout.jobs import EpisodeJob
from automem.rollout.lifecycle import RolloutError
from automem.rollout.outcomes import ExecutionResult, Progress
from automem.rollout.runner import RunnerConfig
from automem.trajectory.storage import aws_credentials

RUNNER_CPUS = 0.5
"""Logical CPUs each runner actor reserves."""


class RayExecutor:
    """Runs episodes on runner actors; the run fails with :class:`RunnersFailing` or :class:`StorageFailing`
    when runners cannot start or be placed, or the store cannot be written."""

    def __init__(self) -> None:
        self.scheduler: RolloutScheduler | None = None

    def prepare(self, config: RolloutConfig) -> str:
        """Connect to Ray; check that some node can host the runners (at once on a cluster started here, which
        has no autoscaler; else the scheduler waits up to ``placement_timeout`` for a node to join).

        Raises:
            RolloutError: the cluster cannot be reached, or a cluster started here has no node for the runners.
        """
        try:
            conn = connect_ray(config.address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RolloutError(f"cannot connect to Ray: {exc}") from None
        line = f"ray: {conn.how}"
        if config.runner_resources and not placeable({"CPU": RUNNER_CPUS, **config.runner_resources}):
            wanted = ", ".join(f"{k}={v:g}" for k, v in config.runner_resources.items())
            if conn.started:
                raise RolloutError(f"no node of the local cluster has the runner resource {wanted}")
            line += (
                f"; no node has the runner resource {wanted} now: waiting up to {config.placement_timeout:.0f} s "
                "for one (an autoscaler adding a node; --placement-timeout)"
            )
        return line

    def execute(
        self,
        jobs: list[EpisodeJob],
        runner: RunnerConfig,
        config: RolloutConfig,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionResult:
        actor_env = env_vars.forwarded(env_vars.AWS_ENDPOINT_URL, env_vars.AUTOMEM_API_KEY)
        actor_env.update(aws_credentials())
        self.scheduler = RolloutScheduler(
            jobs,
            runner,
            num_runners=config.runners or max(1, min(config.concurrency // 64 + 1, 16)),
            concurrency=config.concurrency,
            max_attempts=config.max_attempts,
            on_progress=on_progress,
            runner_env=actor_env or None,
            runner_cpus=RUNNER_CPUS,
            max_llm_inflight=config.max_llm_inflight,
            runner_resources=config.runner_resources or None,
            retry_backoff_s=config.retry_backoff,
            placement_timeout_s=config.placement_timeout,
        )
        return self.scheduler.run()


__all__ = ["RayExecutor", "RunnersFailing", "StorageFailing"]
