"""The episode runner as a Ray actor: ``automem.rollout.EpisodeRunner`` made remote, counting through Ray's metrics.

An async actor: one event loop plays many episodes at once (the model call is the wait), and the CPU-bound game
steps run in worker threads, so they do not block it.
"""

from __future__ import annotations

import ray

from actors.metrics import RayMetrics
from automem.llm.protocol import ChatModel
from automem.rollout.runner import EpisodeRunner, RunnerConfig


class MeteredEpisodeRunner(EpisodeRunner):
    """The domain runner with :class:`actors.metrics.RayMetrics` as its sink (made in the actor's process)."""

    def __init__(self, config: RunnerConfig, client: ChatModel | None = None) -> None:
        super().__init__(config, client, metrics=RayMetrics())


EpisodeRunnerActor = ray.remote(MeteredEpisodeRunner)


def runner_actor(
    *,
    concurrency: int,
    num_cpus: float = 0.5,
    name: str | None = None,
    env_vars: dict | None = None,
    resources: dict[str, float] | None = None,
    scheduling_strategy: str | None = None,
):
    """Options for one runner actor: ``concurrency`` episodes at once (plus room for stats calls).

    ``scheduling_strategy`` is Ray's (``"SPREAD"``: over the nodes that can host it, so that losing one node
    costs only its share of the runners; None: Ray's default, which packs). Ray's defaults are kept on purpose
    (``max_restarts=0``, ``max_task_retries=0``): a dead runner is replaced by the scheduler, which re-runs its
    episodes as new attempts, so no task is silently run twice.
    """
    opts: dict = {"max_concurrency": concurrency + 8, "num_cpus": num_cpus}
    if scheduling_strategy:
        opts["scheduling_strategy"] = scheduling_strategy
    if name:
        opts["name"] = name
    if env_vars:
        opts["runtime_env"] = {"env_vars": env_vars}
    if resources:
        opts["resources"] = resources
    return EpisodeRunnerActor.options(**opts)
