"""What a rollout runs: episode jobs, fanned out from a run's configuration with deterministic ids."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from automem.envs.base import SEED_LIMIT
from automem.scaffold.schema import Scaffold
from automem.trajectory.writer import check_id


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to play: where, with what, and which attempt this is."""

    run_id: str
    episode_id: str
    env_id: str
    seed: int
    scaffold: Scaffold
    memory_model: str
    action_model: str
    max_steps: int
    attempt: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def retry(self) -> EpisodeJob:
        """The same episode as its next attempt."""
        return replace(self, attempt=self.attempt + 1)


def parse_seeds(spec: str) -> list[int]:
    """``"1,5,9"``, ``"0-99"`` (inclusive) or a mix: ``"0-3,10"``.

    Raises:
        ValueError: with the offending part named.
    """
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"bad seed list part {part!r}: use numbers and ranges like 0-99") from None
    if not seeds:
        raise ValueError("the seed list is empty")
    bad = next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)
    if bad is not None:
        raise ValueError(f"seed {bad} is out of range: seeds are integers in [0, 2**64)")
    return seeds


def make_jobs(
    *,
    run_id: str,
    env_id: str,
    episodes: int,
    seeds: list[int],
    scaffold: Scaffold,
    memory_model: str,
    action_model: str,
    max_steps: int,
    env_kwargs: dict[str, Any] | None = None,
) -> list[EpisodeJob]:
    """``episodes`` jobs cycling through ``seeds``; ids are ``<index>-<env>-s<seed>``, stable across resumes."""
    check_id("run id", run_id)
    if episodes < 1:
        raise ValueError("--episodes must be at least 1")
    jobs = []
    for i in range(episodes):
        seed = seeds[i % len(seeds)]
        jobs.append(
            EpisodeJob(
                run_id=run_id,
                episode_id=check_id("episode id", f"{i:06d}-{env_id}-s{seed}"),
                env_id=env_id,
                seed=seed,
                scaffold=scaffold,
                memory_model=memory_model,
                action_model=action_model,
                max_steps=max_steps,
                env_kwargs=dict(env_kwargs or {}),
            )
        )
    return jobs
