"""What a resume continues with: the next attempt number of each episode; and the runners' custom resources.

Which settings a resume keeps is ``automem.rollout.config.RUN_FIELDS`` (compared in ``automem.rollout.lifecycle``).
"""

from __future__ import annotations

import math

from automem.trajectory.runs import recorded_attempts, staged_attempts
from automem.trajectory.storage import Storage


def next_attempts(storage: Storage, run_id: str) -> dict[str, int]:
    """Per episode, one more than the highest attempt number used: those with an ``attempts`` row (read from the
    file names, one listing) and those claimed or left in staging, so a resume never reuses an attempt number.
    A number claimed after this count (by a runner of a driver that was still stopping) is refused to its second
    writer (``AttemptTaken``). Call it before ``repair`` or after: repair records every staged attempt it drops.
    """
    seen = staged_attempts(storage, run_id)
    for eid, att in recorded_attempts(storage, run_id):
        seen[eid] = max(seen.get(eid, 0), att)
    return {eid: att + 1 for eid, att in seen.items()}


# Ray takes these through num_cpus/num_gpus/memory options, never as custom resources (its ValueError would only
# come when the first runner is created, after the run's manifest is written).
_RAY_RESERVED = ("CPU", "GPU", "memory", "object_store_memory")


def parse_resources(specs: list[str]) -> dict[str, float]:
    """``["rollout=0.01"]`` -> ``{"rollout": 0.01}`` (custom Ray resources for the runner actors).

    Checked as Ray checks them when an actor is created: a custom name (not ``CPU``, ``GPU``, ``memory`` or
    ``object_store_memory``), a finite amount above 0 with at most 4 decimals.

    Raises:
        ValueError: a spec is not NAME=AMOUNT of that kind, with the rule it breaks.
    """
    out = {}
    for spec in specs:
        name, _, amount = spec.partition("=")
        name = name.strip()
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not name or not (math.isfinite(value) and 0 < value <= 1e9):
            raise ValueError(f"--runner-resource {spec!r}: use NAME=AMOUNT with a positive amount")
        if name in _RAY_RESERVED:
            raise ValueError(
                f"--runner-resource {spec!r}: {name} is Ray's own resource, not a custom one; runners take "
                "0.5 CPU each (use a custom resource such as rollout=0.01 to pick nodes)"
            )
        if abs(value * 10_000 - round(value * 10_000)) > 1e-6:
            raise ValueError(f"--runner-resource {spec!r}: Ray allows at most 4 decimals (0.0001)")
        out[name] = value
    return out
