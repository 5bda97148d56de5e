# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_evolve_gate.py -q
"""Loop 1's gate: the paired sign-flip test on known distributions, its lower bound's consistency with the p-value,
and A/A simulations (the stub model's random play on corridor-v0, a recorded Crafter-like distribution) whose
false-accept rate stays within the level while a real gain is accepted."""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pytest
from pydantic import ValidationError

from automem.evolve.gate import (
    GateConfig,
    aa_simulation,
    paired_gate,
    random_policy_sampler,
    recorded_outcomes,
    recorded_sampler,
    wilson_upper,
)

ALPHA = 0.05


def _crafter_like(seeds: int, per_seed: int, rng: np.random.Generator) -> dict[int, list[float]]:
    """Skewed outcomes in multiples of 1/22 (achievement counts), a seed-specific difficulty, many ties."""
    out: dict[int, list[float]] = {}
    for s in range(seeds):
        lam = rng.gamma(1.5, 1.2)
        out[1000 + s] = [min(22, int(k)) / 22 for k in rng.poisson(lam, per_seed)]
    return out


def _brute_force_p(d: np.ndarray, margin: float) -> float:
    """The test as defined: share of sign flips of ``d - margin`` whose mean is at or above the observed one."""
    x = d - margin
    observed = x.mean()
    flips = [np.array(s) for s in itertools.product([1.0, -1.0], repeat=len(d))]
    return sum((s * x).mean() >= observed - 1e-12 for s in flips) / len(flips)


# --- The paired test on known distributions -----------------------------------------------------------------------


def test_clear_improvement_is_accepted() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.0, 0.5, 12)
    b = a + 0.2 + rng.normal(0.0, 0.05, 12)
    result = paired_gate(a, b)
    assert result.accepted
    assert result.method == "exact sign-flip"
    assert result.p_value <= ALPHA
    assert 0.0 < result.lower < result.mean_diff < result.upper
    assert result.mean_diff == pytest.approx(result.mean_b - result.mean_a)


def test_no_difference_is_rejected() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(0.0, 1.0, 12)
    identical = paired_gate(a, a)
    assert not identical.accepted and identical.p_value == 1.0
    e = rng.normal(0.0, 0.1, 6)
    noisy = paired_gate(a, a + np.concatenate([e, -e]))  # differences symmetric about 0
    assert not noisy.accepted and noisy.p_value > 0.4
    zeros = paired_gate([0.0] * 8, [0.0] * 8)
    assert not zeros.accepted and zeros.p_value == 1.0


def test_worse_candidate_is_rejected() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0.3, 0.8, 12)
    result = paired_gate(a, a - 0.2 + rng.normal(0.0, 0.05, 12))
    assert not result.accepted
    assert result.p_value == 1.0  # every flip of an all-negative difference is at or above the observed mean
    assert result.upper < 0.0


def test_margin_above_true_gain_is_rejected() -> None:
    rng = np.random.default_rng(4)
    a = rng.uniform(0.0, 0.5, 12)
    b = a + 0.1 + rng.normal(0.0, 0.02, 12)
    assert paired_gate(a, b, GateConfig(margin=0.05)).accepted
    result = paired_gate(a, b, GateConfig(margin=0.15))
    assert not result.accepted and result.lower < 0.15 and result.margin == 0.15


def test_exact_and_monte_carlo_agree() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        a = rng.uniform(0.0, 1.0, 12)
        b = a + rng.normal(0.05, 0.2, 12)
        exact = paired_gate(a, b)
        mc = paired_gate(a, b, GateConfig(exact_max_n=0, resamples=20_000, seed=7))
        assert mc.method == "monte-carlo sign-flip (20000)"
        # 20,000 flips: the p-value's standard error is at most 0.0036.
        assert mc.p_value == pytest.approx(exact.p_value, abs=0.015)
        assert mc.lower == pytest.approx(exact.lower, abs=0.03)


def test_p_value_matches_the_definition() -> None:
    """The subset-mean counting used by the gate equals brute force over the sign flips of ``d - margin``."""
    rng = np.random.default_rng(6)
    for n in (1, 3, 6, 9):
        for margin in (0.0, 0.05, 0.2):
            a = rng.integers(0, 6, n) / 22
            b = rng.integers(0, 8, n) / 22  # ties and float-inexact sums of multiples of 1/22
            d = b - a
            assert paired_gate(a, b, GateConfig(margin=margin)).p_value == pytest.approx(
                _brute_force_p(d, margin)
            )


def test_ties_count_as_at_or_above() -> None:
    # 1/22 + 2/22 - 3/22 is not exactly 0 in floating point; the flip negating all three must still tie.
    a = [0.0, 0.0, 3 / 22]
    b = [1 / 22, 2 / 22, 0.0]
    assert paired_gate(a, b).p_value == pytest.approx(_brute_force_p(np.subtract(b, a), 0.0))


def test_lower_bound_is_consistent_with_the_p_value() -> None:
    rng = np.random.default_rng(7)
    for i in range(400):
        n = int(rng.integers(1, 21))
        a = rng.integers(0, 23, n) / 22 if i % 2 else rng.uniform(0.0, 1.0, n)
        b = np.clip(a + rng.normal(rng.uniform(-0.1, 0.3), 0.15, n), 0.0, 1.0)
        config = GateConfig(
            margin=float(rng.choice([0.0, rng.uniform(0.0, 0.2)])),
            level=float(rng.choice([0.8, 0.9, 0.95, 0.99])),
            exact_max_n=12,
            resamples=2_000,
        )
        r = paired_gate(a, b, config)
        assert r.accepted == (r.lower > r.margin) == (r.p_value <= 1.0 - r.level + 1e-12), (i, r)
        assert r.lower <= r.upper
        assert r.p_value >= 1.0 / 2**n if n <= 12 else r.p_value >= 1.0 / 2_001


def test_lower_bound_is_the_inverted_test() -> None:
    """Just below the lower bound the shifted test rejects; just above it does not."""
    rng = np.random.default_rng(8)
    for _ in range(20):
        a = rng.uniform(0.0, 0.5, 10)
        b = a + rng.normal(0.15, 0.1, 10)
        lower = paired_gate(a, b).lower
        assert paired_gate(a + lower - 1e-6, b).accepted  # tests mean(d) - (lower - eps) <= 0
        assert not paired_gate(a + lower + 1e-6, b).accepted


def test_too_few_seeds_never_accept() -> None:
    # 2**4 * 0.05 < 1: no p-value can reach the level, so nothing is rejected and the bound is unbounded.
    result = paired_gate([0.0] * 4, [1.0] * 4)
    assert not result.accepted and result.p_value == 1 / 16 and result.lower == -math.inf
    assert result.to_dict()["lower"] is None
    assert paired_gate([0.0] * 5, [1.0] * 5).accepted  # 1/32 <= 0.05


def test_empty_input() -> None:
    result = paired_gate([], [])
    assert result.n == 0 and not result.accepted and result.p_value == 1.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="a has 3 outcomes but b has 2"):
        paired_gate([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"b\[2\] is nan"):
        paired_gate([0.1, 0.2, 0.3], [0.1, 0.2, float("nan")])
    with pytest.raises(ValueError, match=r"a\[0\] is inf"):
        paired_gate([float("inf")], [0.0])
    with pytest.raises(ValidationError, match="margin"):
        GateConfig(margin=-0.1)
    with pytest.raises(ValidationError, match="level"):
        GateConfig(level=1.0)
    with pytest.raises(ValidationError, match="extra"):
        GateConfig.model_validate({"margn": 0.1})


# --- A/A simulations and power ---------------------------------------------------------------------------------


def test_wilson_upper() -> None:
    assert wilson_upper(0, 100) == pytest.approx(0.0370, abs=1e-4)
    assert wilson_upper(5, 100) == pytest.approx(0.1118, abs=1e-4)
    assert wilson_upper(10, 10) == 1.0
    with pytest.raises(ValueError):
        wilson_upper(3, 2)


def test_aa_random_policy_on_corridor_keeps_the_level() -> None:
    sampler = random_policy_sampler("corridor-v0", max_steps=20)
    result = aa_simulation(sampler, n_seeds=8, gates=300, seed=11)
    assert result.gates == 300 and result.shift == 0.0
    assert result.rate <= ALPHA and result.within_level, result
    assert sampler._env is not None  # one env, made lazily and reused
    sampler.close()


def test_aa_recorded_crafter_like_keeps_the_level_and_has_power() -> None:
    outcomes = _crafter_like(seeds=40, per_seed=6, rng=np.random.default_rng(12))
    sampler = recorded_sampler(outcomes)
    assert sampler.seeds == sorted(outcomes)
    aa = aa_simulation(sampler, n_seeds=12, gates=300, seed=13)
    assert aa.rate <= ALPHA, aa
    # A gain of two achievements in 22 on every seed is accepted by most gates.
    power = aa_simulation(sampler, n_seeds=12, gates=200, seed=14, shift=2 / 22)
    assert power.rate >= 0.8, power
    assert "within_level" in aa.to_dict() and "within_level" not in power.to_dict()  # a level bounds A/A only


def test_aa_with_a_margin_is_stricter() -> None:
    outcomes = _crafter_like(seeds=30, per_seed=6, rng=np.random.default_rng(15))
    config = GateConfig(margin=2 / 22)
    # The true gain equals the margin: still "no better than the margin", so accepts stay within the level.
    result = aa_simulation(recorded_sampler(outcomes), n_seeds=10, gates=200, config=config, shift=2 / 22)
    assert result.rate <= ALPHA, result


def test_aa_simulation_accepts_a_plain_function_and_checks_seeds() -> None:
    seen: list[int] = []

    def coin(seed: int, rng: np.random.Generator) -> float:
        seen.append(seed)
        return float(rng.integers(0, 2))

    result = aa_simulation(coin, n_seeds=6, gates=50, seed=1)
    assert result.gates == 50 and len(seen) == 600
    assert all(len(set(seen[i : i + 6])) == 6 for i in range(0, 600, 12))  # distinct seeds within a gate
    with pytest.raises(ValueError, match="fewer than n_seeds"):
        aa_simulation(recorded_sampler({1: [0.0], 2: [1.0]}), n_seeds=3, gates=1)
    with pytest.raises(ValueError, match="without recorded outcomes"):
        recorded_sampler({1: []})


def test_recorded_outcomes_from_episodes_view() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE episodes (env_id VARCHAR, seed BIGINT, progression DOUBLE, status VARCHAR)")
    con.execute(
        "INSERT INTO episodes VALUES ('crafter-v0', 1, 0.5, 'truncated'), ('crafter-v0', 1, 0.25, 'terminated'),"
        " ('crafter-v0', 2, 0.0, 'truncated'), ('corridor-v0', 1, 1.0, 'terminated'),"
        " ('crafter-v0', NULL, 0.75, 'truncated')"
    )
    assert recorded_outcomes(con, env_id="crafter-v0") == {1: [0.25, 0.5], 2: [0.0]}
    assert recorded_outcomes(con) == {1: [0.25, 0.5, 1.0], 2: [0.0]}


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_min_seeds_is_the_fewest_that_can_accept(level):
    from automem.evolve.gate import min_seeds

    n = min_seeds(level)
    config = GateConfig(level=level)
    assert paired_gate([0.0] * n, [1.0] * n, config).accepted
    assert not paired_gate([0.0] * (n - 1), [1.0] * (n - 1), config).accepted
