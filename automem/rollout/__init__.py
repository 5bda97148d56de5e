"""Rollouts: episode jobs and the runner that plays and stores them (made remote in ``actors/``)."""

from automem.rollout.jobs import EpisodeJob, make_jobs, parse_seeds
from automem.rollout.runner import EpisodeRunner, LimitedChatModel, RunnerConfig

__all__ = ["EpisodeJob", "EpisodeRunner", "LimitedChatModel", "RunnerConfig", "make_jobs", "parse_seeds"]
