"""What a rollout reports: one episode's outcome, the run's progress, an executor's result, and the retry rule
every executor follows."""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field

from automem.rollout.jobs import EpisodeJob


class RunFailed(RuntimeError):
    """An executor gave the run up: the cause is not one more attempt can fix. Committed episodes are kept."""


class RunnersFailing(RunFailed):
    """Runner actors keep dying without finishing anything (e.g. an error in their creation task), or none could
    be placed on the cluster in time."""


class StorageFailing(RunFailed):
    """The store cannot be written for a reason waiting does not heal (no space, read-only, forbidden)."""


@dataclass(frozen=True)
class EpisodeOutcome:
    """A committed episode, as the runner that committed it (or found it committed) saw it."""

    episode_id: str
    attempt: int
    steps: int
    progression: float
    episode_return: float
    tokens: int
    llm_seconds: float
    wall_seconds: float
    bytes_written: int
    already_committed: bool = False
    """It had committed before (a retry answered from the store, not played again)."""


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running rollout (the CLI's progress bar draws it; about once a second)."""

    total: int
    done: int
    failed: int
    running: int
    queued: int
    attempts: int
    runner_restarts: int
    llm_inflight: int
    steps: float
    tokens: float
    steps_per_s: float
    tokens_per_s: float
    mean_progression: float
    elapsed_s: float


@dataclass
class ExecutionResult:
    """What happened to every job an executor was given."""

    done: list[EpisodeOutcome] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Episode id -> the last attempt's error, for episodes given up."""
    attempts: int = 0
    runner_restarts: int = 0
    already_committed: int = 0
    interrupted: bool = False
    wall_seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    """Time episodes spent waiting out their retry backoff (summed)."""


class RetryPolicy:
    """Attempts per episode in this invocation, and the backoff before each retry.

    ``max_attempts`` counts the attempts dispatched by this run (a resume starts from attempt numbers above 1 and
    still gets as many). The n-th retry waits ``backoff_s * 2**(n-1)``, times a jitter of 0.5-1.5, at most
    ``MAX_BACKOFF_S``; retries waiting out their backoff are held here until due.
    """

    MAX_BACKOFF_S = 300.0

    def __init__(
        self, max_attempts: int, backoff_s: float = 0.0, *, rng: random.Random | None = None
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.tries: dict[str, int] = {}
        self.waited_s = 0.0
        self._delayed: list[tuple[float, int, EpisodeJob]] = []
        self._seq = 0
        self._rng = rng or random.Random()

    def dispatched(self, job: EpisodeJob) -> None:
        """Count one attempt of ``job``'s episode."""
        self.tries[job.episode_id] = self.tries.get(job.episode_id, 0) + 1

    def retry(self, job: EpisodeJob, *, backoff: bool = True) -> bool:
        """Schedule the episode's next attempt (``due`` hands it out once its backoff has passed); False if the
        episode used up its attempts and is given up.

        Args:
            backoff: False for attempts lost with their runner (the episode did nothing wrong): due at once.
        """
        tries = self.tries.get(job.episode_id, 1)
        if tries >= self.max_attempts:
            return False
        delay = 0.0
        if backoff and self.backoff_s > 0:
            delay = min(self.MAX_BACKOFF_S, self.backoff_s * 2 ** (tries - 1) * self._rng.uniform(0.5, 1.5))
        self.waited_s += delay
        self._seq += 1
        heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, job.retry()))
        return True

    def due(self) -> list[EpisodeJob]:
        """Retries whose backoff has passed."""
        now, out = time.monotonic(), []
        while self._delayed and self._delayed[0][0] <= now:
            out.append(heapq.heappop(self._delayed)[2])
        return out

    def waiting(self) -> int:
        """Retries still in their backoff."""
        return len(self._delayed)

    def next_due_in(self) -> float:
        """Seconds until the next held retry is due (0 when none is held)."""
        return max(0.0, self._delayed[0][0] - time.monotonic()) if self._delayed else 0.0
