"""A/A simulation of Loop 1's gate: how often it accepts a scaffold played against itself, and its power.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/gate_aa.py                       # crafter-v0 defaults
    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/gate_aa.py --store ROOT          # + recorded outcomes
    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/gate_aa.py --gates 20 --shift 0  # smoke check

Prints one JSON line. For each outcome source, ``aa`` is the false-accept rate of ``--gates`` simulated gates
(``automem.evolve.gate.aa_simulation``) with its 95% Wilson upper bound; the requirement is ``rate <= 1 - level``
(``within_level``). ``power`` is the accept rate when every candidate outcome gains ``--shift`` (0: skipped).
Sources:
- ``random_policy``: the stub model's play (uniformly random actions) on ``--env`` for at most ``--max-steps`` steps
  per episode. A Crafter episode costs about 60 ms on one core (the reset's world generation dominates: ~50 ms),
  so the defaults (200 A/A gates and 100 power gates, x 8 seeds x 2 sides) take about five minutes.
- ``recorded`` (with ``--store``): per-seed progressions of the store's committed ``--env`` episodes, each side
  drawing independently with replacement from its seed's recorded outcomes (a seed recorded once always ties).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from automem.evolve.gate import (
    GateConfig,
    SamplerLike,
    aa_simulation,
    random_policy_sampler,
    recorded_outcomes,
    recorded_sampler,
)


def simulate(sampler: SamplerLike, args: argparse.Namespace, config: GateConfig) -> dict[str, Any]:
    """The A/A rate, and the power at ``args.shift`` when it is positive, with the seconds each took."""
    t0 = time.perf_counter()
    aa = aa_simulation(sampler, n_seeds=args.n_seeds, gates=args.gates, config=config, seed=args.seed)
    out: dict[str, Any] = {"aa": aa.to_dict(), "aa_s": round(time.perf_counter() - t0, 1)}
    if args.shift > 0:
        t0 = time.perf_counter()
        power = aa_simulation(
            sampler,
            n_seeds=args.n_seeds,
            gates=args.power_gates,
            config=config,
            seed=args.seed + 1,
            shift=args.shift,
        )
        out["power"] = power.to_dict()
        out["power_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="crafter-v0", help="registered environment id (default crafter-v0)")
    parser.add_argument("--gates", type=int, default=200, help="simulated A/A gates per source (default 200)")
    parser.add_argument("--n-seeds", type=int, default=8, help="seeds per gate (default 8)")
    parser.add_argument(
        "--max-steps", type=int, default=30, help="random-policy steps per episode (default 30)"
    )
    parser.add_argument(
        "--level", type=float, default=0.95, help="the gate's confidence level (default 0.95)"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="the gate's margin (default 0)")
    parser.add_argument(
        "--shift", type=float, default=1 / 22, help="true gain for the power check; 0 skips it (default 1/22)"
    )
    parser.add_argument("--power-gates", type=int, default=100, help="gates of the power check (default 100)")
    parser.add_argument("--store", help="a trajectory store root: also simulate from its recorded outcomes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulations (default 0)")
    args = parser.parse_args(argv)

    config = GateConfig(level=args.level, margin=args.margin)
    report: dict[str, Any] = {
        "env_id": args.env,
        "gates": args.gates,
        "n_seeds": args.n_seeds,
        "level": args.level,
        "margin": args.margin,
        "shift": args.shift,
    }
    sampler = random_policy_sampler(args.env, args.max_steps)
    try:
        report["random_policy"] = {"max_steps": args.max_steps, **simulate(sampler, args, config)}
    finally:
        sampler.close()
    if args.store:
        from automem.trajectory import connect

        outcomes = recorded_outcomes(connect(args.store), env_id=args.env)
        report["recorded"] = {
            "store": args.store,
            "seeds": len(outcomes),
            "episodes": sum(len(v) for v in outcomes.values()),
            "seeds_recorded_more_than_once": sum(len(v) > 1 for v in outcomes.values()),
            **simulate(recorded_sampler(outcomes), args, config),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
