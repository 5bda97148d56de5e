"""What a rollout runs: episode jobs, fanned out from a run's configuration with deterministic ids."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, overload

from automem.envs.base import SEED_LIMIT
from automem.scaffold.schema import Scaffold
from automem.trajectory.writer import check_id

if TYPE_CHECKING:
    from automem.branch.plan import BranchStart


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
    branch: BranchStart | None = None
    """Set for a branch episode: the stored episode and step it continues from (``automem.branch``)."""

    def retry(self) -> EpisodeJob:
        """The same episode as its next attempt."""
        return replace(self, attempt=self.attempt + 1)


MAX_EPISODES = 1_000_000
"""Most episodes one run may have: the driver holds one job per episode in memory (about 1 KB each), so a
larger count is refused up front instead of exhausting memory; split the work into several runs."""


class SeedList(Sequence[int]):
    """The seeds of a seed list, kept as ranges: ``0-1000000000`` costs two integers, not a billion.

    Indexing and ``len`` are O(number of parts); iteration is lazy.
    """

    def __init__(self, parts: list[range]) -> None:
        self.parts = [r for r in parts if len(r)]
        self._starts: list[int] = []
        n = 0
        for r in self.parts:
            self._starts.append(n)
            n += len(r)
        self._len = n

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> list[int]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("seed index out of range")
        k = bisect.bisect_right(self._starts, i) - 1
        return self.parts[k][i - self._starts[k]]

    def __iter__(self) -> Iterator[int]:
        for r in self.parts:
            yield from r

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SeedList):
            return self.parts == other.parts
        if isinstance(other, list):
            return len(other) == self._len and all(a == b for a, b in zip(self, other, strict=False))
        return NotImplemented

    def __repr__(self) -> str:
        return (
            "SeedList("
            + ",".join(f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start) for r in self.parts)
            + ")"
        )


def parse_seeds(spec: str) -> SeedList:
    """``"1,5,9"``, ``"0-99"`` (inclusive) or a mix: ``"0-3,10"``; ranges stay ranges (never expanded).

    Raises:
        ValueError: with the offending part named.
    """
    parts: list[range] = []
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
            else:
                lo = hi = int(part)
        except ValueError:
            raise ValueError(f"bad seed list part {part!r}: use numbers and ranges like 0-99") from None
        for s in (lo, hi):
            if not 0 <= s < SEED_LIMIT:
                raise ValueError(f"seed {s} is out of range: seeds are integers in [0, 2**64)")
        parts.append(range(lo, hi + 1))
    if not parts:
        raise ValueError("the seed list is empty")
    return SeedList(parts)


def make_jobs(
    *,
    run_id: str,
    env_id: str,
    episodes: int,
    seeds: Sequence[int],
    scaffold: Scaffold,
    memory_model: str,
    action_model: str,
    max_steps: int,
    env_kwargs: dict[str, Any] | None = None,
) -> list[EpisodeJob]:
    """``episodes`` jobs cycling through ``seeds``; ids are ``<index>-<env>-s<seed>``, stable across resumes."""
    check_id("run id", run_id)
    if not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(
            f"--episodes must be between 1 and {MAX_EPISODES:,}; split larger work into several runs"
        )
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
