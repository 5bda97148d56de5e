"""Rollouts: the config, the run lifecycle over an executor, episode jobs and the runner that plays and stores them
(made remote in ``actors/``).

    from automem.rollout import RolloutConfig, run_rollout
    result = run_rollout(RolloutConfig(env="crafter-v0", episodes=4, max_steps=10, out="runs"))
"""

from automem.rollout.config import RolloutConfig, load_rollout_config
from automem.rollout.jobs import EpisodeJob, make_jobs, parse_seeds
from automem.rollout.lifecycle import (
    Executor,
    RolloutError,
    RolloutResult,
    RunBusy,
    get_executor,
    run_rollout,
)
from automem.rollout.outcomes import EpisodeOutcome, ExecutionResult, Progress, RunFailed
from automem.rollout.runner import EpisodeRunner, LimitedChatModel, RunnerConfig

__all__ = [
    "EpisodeJob",
    "EpisodeOutcome",
    "EpisodeRunner",
    "ExecutionResult",
    "Executor",
    "LimitedChatModel",
    "Progress",
    "RolloutConfig",
    "RolloutError",
    "RolloutResult",
    "RunBusy",
    "RunFailed",
    "RunnerConfig",
    "get_executor",
    "load_rollout_config",
    "make_jobs",
    "parse_seeds",
    "run_rollout",
]
