"""What a rollout plays, and what a resume continues with.

The options that define a run's episodes (env, count, seeds, scaffold, models, step cap) are stored in its
manifest when it starts; a resume takes them from there, so ``automem rollout --resume --run-id ID --out ROOT``
continues exactly the run that was started, and an option given again with another value is an error rather than
a silent mix of two runs. The options that only say how to run (concurrency, endpoint, limits) may change.
"""

from __future__ import annotations

import math
from typing import Any

from automem.llm.embedded import BASE_MODEL_ID
from automem.trajectory.runs import recorded_attempts, staged_attempts
from automem.trajectory.storage import Storage

JOB_DEFAULTS: dict[str, Any] = {
    "env": "crafter-v0",
    "episodes": 8,
    "seeds": "0-999",
    "scaffold": None,
    "model": BASE_MODEL_ID,
    "memory_model": None,
    "max_steps": 30,
}
"""The options that define a run's episodes, with their defaults (``scaffold`` None: the env family's v0). The
rollout CLI's help repeats them as text, so that ``automem --help`` need not import this module."""


def job_settings(given: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The episode-defining options of a run.

    Args:
        given: the options as passed now (None where not passed), keyed as in ``JOB_DEFAULTS``.
        manifest: the run's manifest when resuming, else None.

    Returns:
        For a new run, ``given`` with defaults filled in; for a resume, the manifest's stored values. The scaffold
        is the caller's to compare (by content id), since a name and a file can mean the same scaffold.

    Raises:
        ValueError: an option given for a resume differs from the run's, with the option named.
    """
    if manifest is None:
        return {k: default if given.get(k) is None else given[k] for k, default in JOB_DEFAULTS.items()}
    stored = manifest.get("config", {})
    out = {}
    for key, default in JOB_DEFAULTS.items():
        before = stored.get(key, default)
        now = given.get(key)
        if key != "scaffold" and now is not None and now != before:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{flag} {now!r} differs from the run's {before!r}; a resume keeps them")
        out[key] = before
    return out


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
