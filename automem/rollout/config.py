"""``RolloutConfig``: everything a rollout needs, as one strict, documented, frozen model.

Written as YAML, a dict, or keyword arguments; ``automem rollout --config rollout.yaml episodes=64`` applies
overrides and the CLI's flags are sugar over the same fields. The run's manifest stores the config as
``model_dump(mode="json")`` and a resume compares typed configs: the fields that define the run's episodes
(``RUN_FIELDS``) come from the manifest and may not be given with another value; the others say how to run and may
change between a run and its resume.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from automem.branch.plan import BranchPlan
from automem.config import ConfigError, StrictConfig, load_model, parse_model
from automem.llm.embedded import BASE_MODEL_ID
from automem.rollout.jobs import MAX_EPISODES, parse_seeds
from automem.rollout.resume import parse_resources
from automem.scaffold.schema import Scaffold
from automem.trajectory.writer import check_id

RUN_FIELDS = ("env", "episodes", "seeds", "scaffold", "model", "memory_model", "max_steps", "branch")
"""The fields that define a run's episodes: fixed when it starts, taken from its manifest by a resume."""


class RolloutConfig(StrictConfig):
    """A rollout: which episodes to play, against which models, where to store them, and how to run them."""

    env: str = "crafter-v0"
    """Environment id (``automem env list``)."""
    episodes: int = Field(8, ge=1, le=MAX_EPISODES)
    """Number of episodes; ids are ``<index>-<env>-s<seed>``."""
    seeds: str = "0-999"
    """Seed list, cycled over the episodes: ``"1,5,9"``, ``"0-99"`` (inclusive) or a mix; a YAML list of ints works
    too. Ranges are never expanded."""
    scaffold: str | Scaffold | None = None
    """A built-in scaffold name, a YAML file, or the scaffold itself (inline mapping); None: ``<env family>-v0``."""
    model: str = BASE_MODEL_ID
    """Model that commits game actions."""
    memory_model: str | None = None
    """Model for memory turns, e.g. ``BASE:ADAPTER`` (a LoRA memory specialist); None: ``model``."""
    endpoint: str = "embedded"
    """OpenAI-compatible base URL, or ``embedded`` to use (or start) the embedded endpoint. A resume keeps the run's
    endpoint unless this is given."""
    max_steps: int = Field(30, ge=1)
    """Step cap per episode (a branch run: steps played on from each branch point)."""
    concurrency: int = Field(8, ge=1)
    """Episodes in flight at once."""
    runners: int | None = Field(None, ge=1)
    """Runner actors (None: concurrency/64 + 1, at most 16)."""
    runner_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each runner requests, e.g. ``{rollout: 0.01}`` to place runners on the cluster's
    rollout nodes (``ray_cluster.yaml``)."""
    max_attempts: int = Field(3, ge=1)
    """Attempts per episode in this invocation before it is given up; a resume gives failed episodes as many."""
    max_llm_inflight: int = Field(256, ge=1)
    """Model requests in flight at once over all runners: backpressure on the endpoint."""
    episode_timeout: float | None = None
    """Seconds one attempt may take before it fails and is retried (None: no limit)."""
    retry_backoff: float = 10.0
    """Seconds before an episode's first retry, doubled for each further one, with jitter (0: none)."""
    placement_timeout: float = 600.0
    """Seconds to wait for the first runner to be placed (an autoscaling cluster adding a node)."""
    context_window: int = Field(4096, ge=256, le=10_000_000)
    """The served model's context length (tokens)."""
    out: str = "runs"
    """Storage root: a folder or ``s3://bucket/prefix``."""
    run_id: str | None = None
    """Run id (None: ``<env>-<UTC time>``); needed to resume."""
    address: str | None = None
    """Ray cluster address (None: ``RAY_ADDRESS``, a running local cluster, or a new one)."""
    branch: BranchPlan | None = None
    """A branch run (``automem branch play``): its episodes continue stored episodes from a step under the plan's
    arms, instead of new games from ``seeds``; ``env`` and ``episodes`` follow from the plan."""
    executor: Literal["ray", "local"] = "ray"
    """``ray``: runner actors on a Ray cluster; ``local``: the same runner in this process (no Ray; small runs and
    tests)."""

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            v = ",".join(str(s) for s in v)
        if isinstance(v, int):
            v = str(v)
        if isinstance(v, str):
            parse_seeds(v)  # ValueError names the bad part
        return v

    @field_validator("episode_timeout", "retry_backoff", "placement_timeout")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        if v is None:
            return v
        positive = info.field_name != "retry_backoff"
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise ValueError(f"must be a finite number of seconds {'above' if positive else 'of at least'} 0")
        return v

    @field_validator("runner_resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        return parse_resources([f"{k}={a}" for k, a in v.items()])

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str | None) -> str | None:
        return v if v is None else check_id("run id", v)

    def run_settings(self) -> dict[str, Any]:
        """The ``RUN_FIELDS`` as JSON values (the scaffold as given: a name, a path, or its mapping)."""
        dumped = self.model_dump(mode="json")
        return {k: dumped[k] for k in RUN_FIELDS}


def load_rollout_config(
    path: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RolloutConfig:
    """A rollout config from a YAML file (None: the defaults) and ``key=value`` overrides.

    Raises:
        ConfigError: a missing file, bad YAML, or a field that fails validation (with the field's path).
    """
    return load_model(RolloutConfig, path, overrides, what="rollout config")


def rollout_config(data: dict[str, Any], source: str = "<dict>") -> RolloutConfig:
    """Validate a mapping (e.g. a manifest's stored config) as a RolloutConfig.

    Raises:
        ConfigError: with the field's path.
    """
    return parse_model(RolloutConfig, data, source=source, what="rollout config")


__all__ = ["RUN_FIELDS", "ConfigError", "RolloutConfig", "load_rollout_config", "rollout_config"]
