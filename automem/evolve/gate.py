"""The statistical gate of Loop 1: keep a candidate scaffold only when it is better, with a bounded false-accept rate.

Loop 1 plays the candidate and the current scaffold on the same tuning seeds, one episode per seed each side, and
hands the gate the two lists of per-seed outcomes (progression, a float in ``[0, 1]``). The gate tests the per-seed
differences ``d_i = b_i - a_i`` (candidate minus current) with a paired **sign-flip permutation test** of
``H0: mean(d) <= margin`` against ``H1: mean(d) > margin``, and accepts the candidate only when ``H0`` is rejected
at ``1 - level``. Equivalently (below), only when the one-sided lower confidence bound of the mean difference at
``level`` clears ``margin``.

Why this test. Progression is bounded, skewed and full of ties (Crafter's is a count of achievements over 22), the
seed sets are small (8 to 16 seeds), and a gate run decides whether Loop 1 moves on, so the false-accept rate must
hold for these samples, not asymptotically: a t-test's normal approximation does not promise that. The sign-flip
test needs only that, under "no difference", each pair's two outcomes are exchangeable (the two scaffolds are
played the same way on the same seed), so that ``d_i`` is symmetric about 0: then every sign pattern of the
``d_i`` is as likely as the observed one, and the share of sign-flipped means at or above the observed mean is an
exact p-value. Counting ties as "at or above" and the identity flip as one of the flips makes it conservative
(``p >= 1 / 2**n``), never liberal. With ``n <= exact_max_n`` seeds all ``2**n`` flips are enumerated; above that
``resamples`` random flips (seeded by ``GateConfig.seed``, so a gate's verdict is reproducible) plus the identity
give the usual Monte Carlo p-value ``(1 + #{flips at or above}) / (resamples + 1)``, which keeps the level too.

The lower bound, and why ``accepted == (lower > margin)``. Testing ``d - delta``: a flip that negates the subset
``F`` of the differences (``k = |F| > 0``) gives a mean at or above the observed one iff
``sum_F (d_i - delta) <= 0``, i.e. iff the subset mean ``mean_F(d) <= delta``; the identity (``F`` empty) always
counts. So ``p(delta) = #{flips F: mean_F(d) <= delta} / T`` (``T`` flips, identity included) is a step function,
non-decreasing in ``delta``, and the test rejects ``delta`` iff that count is at most ``K = floor((1 - level) * T)``.
Sorting the ``T`` subset means (the identity's as ``-inf``), the count is at most ``K`` iff ``delta`` is below the
``(K+1)``-th smallest of them, ``m[K]``: the values not rejected are exactly ``[m[K], inf)``, so ``lower = m[K]``
is the lower confidence bound obtained by inverting the test (Hartigan's subset-mean bound), exactly, with no
search, and ``p(margin) <= 1 - level`` iff ``margin < lower``. When ``K = 0`` (too few seeds for the level:
``2**n * (1 - level) < 1``) nothing can be rejected, ``lower = -inf`` and the gate never accepts. Ties in floating
point (``1/22 + 2/22 - 3/22`` is not exactly 0) are absorbed by comparing with a tolerance of ``1e-9`` times the
largest ``|d_i|`` (at least ``1e-9``), which counts near-ties as ties (the conservative side); ``lower`` is
reported net of that tolerance, so the equivalence holds up to rounding in the last bit. ``upper`` is the same
bound for ``-d``, negated: the other end of a symmetric interval, for display only.

The A/A simulation (``aa_simulation``) checks the promise empirically: the same scaffold against itself on many
seed sets, outcomes from a sampler (the stub model's uniformly random actions on a registered environment,
``random_policy_sampler``, or recorded per-seed outcomes, ``recorded_sampler``), counting how often the gate
accepts. With ``shift > 0`` the same simulation measures the gate's power against a true gain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from automem.config import StrictConfig

if TYPE_CHECKING:
    import duckdb

    from automem.envs.base import TextEnv

SEED_RANGE = 2**31
"""Seeds for samplers that accept any seed are drawn, distinct within a gate, from ``[0, SEED_RANGE)``."""

_TIE_TOL = 1e-9
"""Relative tolerance under which a subset mean counts as tied with ``delta`` (see the module docstring)."""


class GateConfig(StrictConfig):
    """How the gate decides: the margin to clear, the confidence, and how sign flips are counted."""

    margin: float = Field(0.0, ge=0.0)
    """The mean progression gain (candidate minus current) that the lower bound must exceed. Not negative: a false
    accept is accepting a candidate that is no better, and the level bounds its rate only for ``margin >= 0``."""
    level: float = Field(0.95, gt=0.0, lt=1.0)
    """Confidence of the one-sided lower bound; the false-accept rate is at most ``1 - level``."""
    resamples: int = Field(20_000, ge=1)
    """Monte Carlo sign flips (besides the identity) when exact enumeration is too big."""
    exact_max_n: int = Field(16, ge=0, le=20)
    """Enumerate all ``2**n`` sign flips up to this many seeds; above it, draw ``resamples`` flips."""
    seed: int = 0
    """Seed of the Monte Carlo flips, so that a gate's verdict is reproducible."""


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one candidate.

    Attributes:
        n: Seeds (pairs of episodes).
        mean_a: Mean outcome of the current scaffold.
        mean_b: Mean outcome of the candidate.
        mean_diff: Mean of the per-seed differences (candidate minus current).
        lower: One-sided lower confidence bound of the mean difference at ``level`` (``-inf`` when too few seeds).
        upper: The symmetric upper bound (``inf`` when too few seeds), for display.
        p_value: p-value of ``H0: mean difference <= margin``.
        margin: The margin the lower bound had to exceed.
        level: The confidence level.
        accepted: ``p_value <= 1 - level``, equivalently ``lower > margin``.
        method: ``"exact sign-flip"`` or ``"monte-carlo sign-flip (N)"``.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    lower: float
    upper: float
    p_value: float
    margin: float
    level: float
    accepted: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (non-finite floats, e.g. an unbounded ``lower``, as None)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def _outcomes(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {float(arr[i])}: outcomes must be finite numbers (no NaN or inf)")
    return arr


@lru_cache(maxsize=8)
def _all_flips(n: int) -> np.ndarray:
    """Every subset of ``range(n)`` as a ``(2**n, n)`` 0/1 matrix; row 0 is the empty subset (the identity)."""
    codes = np.arange(2**n, dtype=np.int64)[:, None]
    return ((codes >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(np.float64)


def _flips(n: int, config: GateConfig) -> tuple[np.ndarray, str]:
    """The negated subsets to count, identity first, and the method's name."""
    if n <= config.exact_max_n:
        return _all_flips(n), "exact sign-flip"
    rng = np.random.default_rng(config.seed)
    drawn = rng.integers(0, 2, size=(config.resamples, n)).astype(np.float64)
    return np.vstack([np.zeros((1, n)), drawn]), f"monte-carlo sign-flip ({config.resamples})"


def _subset_means(d: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Mean of ``d`` over each negated subset; ``-inf`` for the empty one (the identity: always at or above)."""
    k = flips.sum(axis=1)
    sums = flips @ d
    out = np.full(len(flips), -np.inf)
    np.divide(sums, k, out=out, where=k > 0)
    return out


def _bound(sorted_means: np.ndarray, allowed: int, tol: float) -> float:
    """The smallest ``delta`` not rejected: the ``(allowed + 1)``-th smallest subset mean, net of the tie tolerance."""
    return float(sorted_means[allowed]) - tol


def min_seeds(level: float) -> int:
    """Fewest seeds with which the gate can accept at ``level``: ``2**n * (1 - level) >= 1``."""
    n = 0
    while 2**n * (1 - level) < 1 - 1e-12:
        n += 1
    return n


def paired_gate(a: Sequence[float], b: Sequence[float], config: GateConfig | None = None) -> GateResult:
    """Test whether the candidate (``b``) beats the current scaffold (``a``) by more than ``config.margin``.

    Args:
        a: Per-seed outcomes of the current scaffold.
        b: Per-seed outcomes of the candidate, on the same seeds in the same order.
        config: The gate's settings (default ``GateConfig()``).

    Returns:
        The verdict: accepted iff the sign-flip p-value of ``mean(b - a) <= margin`` is at most ``1 - level``,
        which is the same as the lower confidence bound exceeding the margin (see the module docstring).

    Raises:
        ValueError: ``a`` and ``b`` differ in length, or an outcome is NaN or infinite.
    """
    config = config or GateConfig()
    xa, xb = _outcomes(a, "a"), _outcomes(b, "b")
    if len(xa) != len(xb):
        raise ValueError(f"a has {len(xa)} outcomes but b has {len(xb)}: the gate needs one pair per seed")
    n = len(xa)
    alpha = 1.0 - config.level
    if n == 0:
        nan = float("nan")
        return GateResult(
            0, nan, nan, nan, -math.inf, math.inf, 1.0, config.margin, config.level, False, "exact sign-flip"
        )
    d = xb - xa
    flips, method = _flips(n, config)
    total = len(flips)
    # Rejections allowed: p = count / total <= alpha  <=>  count <= floor(alpha * total) (the nudge absorbs a
    # product such as 0.05 * 20001 landing a hair under an integer it equals exactly).
    allowed = min(math.floor(alpha * total + 1e-9), total - 1)
    tol = _TIE_TOL * max(1.0, float(np.max(np.abs(d))))
    means = _subset_means(d, flips)
    count = int(np.count_nonzero(means <= config.margin + tol))
    lower = _bound(np.sort(means), allowed, tol)
    upper = -_bound(np.sort(_subset_means(-d, flips)), allowed, tol)
    return GateResult(
        n=n,
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        mean_diff=float(d.mean()),
        lower=lower,
        upper=upper,
        p_value=count / total,
        margin=config.margin,
        level=config.level,
        accepted=count <= allowed,
        method=method,
    )


# --- The A/A simulation ----------------------------------------------------------------------------------------


@runtime_checkable
class OutcomeSampler(Protocol):
    """Where simulated outcomes come from: one episode's outcome for a seed, and the seeds it can play."""

    @property
    def seeds(self) -> Sequence[int] | None:
        """The seeds a simulation may choose from; None: any seed in ``[0, SEED_RANGE)``."""
        ...

    def __call__(self, seed: int, rng: np.random.Generator) -> float:
        """One episode's outcome on ``seed``, its randomness drawn from ``rng``."""
        ...


SamplerLike = OutcomeSampler | Callable[[int, np.random.Generator], float]
"""An ``OutcomeSampler``, or a bare function ``(seed, rng) -> outcome`` that accepts any seed."""


@dataclass(frozen=True)
class AAResult:
    """How often the gate accepted in a simulation.

    Attributes:
        gates: Simulated gates.
        accepts: Gates that accepted.
        rate: ``accepts / gates``: the false-accept rate of an A/A simulation (``shift == 0``), the power otherwise.
        rate_upper: Upper end of the 95% Wilson score interval of the rate.
        level: The gate's confidence level (an A/A rate should be at most ``1 - level``).
        margin: The gate's margin.
        n_seeds: Seeds per gate.
        shift: What was added to every candidate outcome (0: A/A).
    """

    gates: int
    accepts: int
    rate: float
    rate_upper: float
    level: float
    margin: float
    n_seeds: int
    shift: float

    @property
    def within_level(self) -> bool:
        """The observed rate is at most the configured false-accept rate ``1 - level``."""
        return self.rate <= 1.0 - self.level + 1e-12

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values, with ``within_level`` for an A/A simulation (``shift == 0``)."""
        out = asdict(self)
        if self.shift == 0.0:
            out["within_level"] = self.within_level
        return out


def wilson_upper(successes: int, trials: int, confidence: float = 0.95) -> float:
    """Upper end of the two-sided Wilson score interval of a binomial proportion.

    Raises:
        ValueError: ``trials < 1`` or ``successes`` outside ``[0, trials]``.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    z2n = z * z / trials
    centre = p + z2n / 2
    half = z * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials))
    return min(1.0, (centre + half) / (1 + z2n))


def aa_simulation(
    sampler: SamplerLike,
    *,
    n_seeds: int,
    gates: int,
    config: GateConfig | None = None,
    seed: int = 0,
    shift: float = 0.0,
) -> AAResult:
    """Run ``gates`` simulated gates of the same scaffold against itself and count the accepts.

    Each gate picks ``n_seeds`` distinct seeds at random (without replacement from ``sampler.seeds`` when the
    sampler restricts them, else from ``[0, SEED_RANGE)``), draws the current (A) and the candidate (B) outcome of
    every seed independently from ``sampler``, adds ``shift`` to each B outcome, and runs ``paired_gate``. All
    randomness comes from one generator seeded with ``seed``, so a simulation is reproducible.

    Args:
        sampler: Where outcomes come from (``random_policy_sampler``, ``recorded_sampler``, or a function).
        n_seeds: Seeds per gate.
        gates: Gates to simulate.
        config: The gate's settings (default ``GateConfig()``).
        seed: Seed of the simulation's generator.
        shift: True gain given to the candidate: 0 for the A/A false-accept rate, > 0 to measure power.

    Raises:
        ValueError: ``n_seeds`` or ``gates`` below 1, or more seeds asked than the sampler has.
    """
    config = config or GateConfig()
    if n_seeds < 1 or gates < 1:
        raise ValueError(f"need n_seeds >= 1 and gates >= 1, got n_seeds={n_seeds}, gates={gates}")
    pool = getattr(sampler, "seeds", None)
    if pool is not None and len(pool) < n_seeds:
        raise ValueError(f"the sampler has {len(pool)} seeds, fewer than n_seeds={n_seeds}")
    rng = np.random.default_rng(seed)
    accepts = 0
    for _ in range(gates):
        if pool is None:
            chosen = [int(s) for s in rng.choice(SEED_RANGE, size=n_seeds, replace=False)]
        else:
            chosen = [int(pool[i]) for i in rng.choice(len(pool), size=n_seeds, replace=False)]
        a = [float(sampler(s, rng)) for s in chosen]
        b = [float(sampler(s, rng)) + shift for s in chosen]
        accepts += paired_gate(a, b, config).accepted
    return AAResult(
        gates=gates,
        accepts=accepts,
        rate=accepts / gates,
        rate_upper=wilson_upper(accepts, gates),
        level=config.level,
        margin=config.margin,
        n_seeds=n_seeds,
        shift=shift,
    )


class RandomPolicySampler:
    """The stub model's play: uniformly random valid actions on a registered environment (``OutcomeSampler``).

    The environment is made on first use and reused (a reset is much cheaper than a make).
    """

    seeds: Sequence[int] | None = None

    def __init__(self, env_id: str, max_steps: int, **env_kwargs: Any) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.env_id = env_id
        self.max_steps = max_steps
        self.env_kwargs = env_kwargs
        self._env: TextEnv | None = None

    def _get_env(self) -> TextEnv:
        if self._env is None:
            from automem.envs.registry import make_env

            self._env = make_env(self.env_id, **self.env_kwargs)
        return self._env

    def __call__(self, seed: int, rng: np.random.Generator) -> float:
        """Reset on ``seed``, play random actions until the episode ends or ``max_steps``; the final progression."""
        env = self._get_env()
        _, info = env.reset(seed=seed)
        names = [spec.name for spec in env.actions]
        for _ in range(self.max_steps):
            _, _, terminated, truncated, info = env.step(names[int(rng.integers(len(names)))])
            if terminated or truncated:
                break
        return float(info["progression"])

    def close(self) -> None:
        """Close the environment, if it was made."""
        if self._env is not None:
            self._env.close()
            self._env = None


def random_policy_sampler(env_id: str, max_steps: int, **env_kwargs: Any) -> RandomPolicySampler:
    """Outcomes of the stub model on ``env_id``: uniformly random actions for at most ``max_steps`` steps.

    Args:
        env_id: A registered environment id (``automem env list``), e.g. ``corridor-v0`` or ``crafter-v0``.
        max_steps: Steps per episode at most (the episode may end sooner).
        env_kwargs: Overrides of the environment's registered defaults.
    """
    return RandomPolicySampler(env_id, max_steps, **env_kwargs)


class RecordedSampler:
    """Outcomes drawn uniformly, with replacement, from each seed's recorded outcomes (``OutcomeSampler``)."""

    def __init__(self, outcomes: Mapping[int, Sequence[float]]) -> None:
        table = {int(s): _outcomes(list(v), f"outcomes[{s}]") for s, v in outcomes.items()}
        empty = [s for s, v in table.items() if v.size == 0]
        if empty:
            raise ValueError(f"seeds without recorded outcomes: {empty[:10]}")
        if not table:
            raise ValueError("no recorded outcomes")
        self._table = table
        self.seeds: Sequence[int] | None = sorted(table)

    def __call__(self, seed: int, rng: np.random.Generator) -> float:
        """One of ``seed``'s recorded outcomes, uniformly at random."""
        values = self._table[seed]
        return float(values[int(rng.integers(len(values)))])


def recorded_sampler(outcomes: Mapping[int, Sequence[float]]) -> RecordedSampler:
    """Outcomes resampled from recorded ones: seed -> that seed's outcomes (e.g. from ``recorded_outcomes``).

    Raises:
        ValueError: no seeds, a seed with no outcomes, or a non-finite outcome.
    """
    return RecordedSampler(outcomes)


def recorded_outcomes(con: duckdb.DuckDBPyConnection, *, env_id: str | None = None) -> dict[int, list[float]]:
    """Every committed episode's progression, grouped by seed, from a store's connection.

    Args:
        con: A connection from ``automem.trajectory.connect(root)`` (its ``episodes`` view shows committed
            episodes only).
        env_id: Only this environment's episodes (None: all of them).

    Returns:
        seed -> progressions, in a stable order; episodes without a seed or a progression are left out.
    """
    sql = "SELECT seed, progression FROM episodes WHERE seed IS NOT NULL AND progression IS NOT NULL"
    params: list[Any] = []
    if env_id is not None:
        sql += " AND env_id = ?"
        params.append(env_id)
    sql += " ORDER BY seed, progression"
    out: dict[int, list[float]] = {}
    for seed, progression in con.execute(sql, params).fetchall():
        out.setdefault(int(seed), []).append(float(progression))
    return out
