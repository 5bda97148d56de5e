"""Unproductive and invalid actions of one episode.

- **invalid action**: the model's answer was not a valid action and the scaffold's default was taken instead
  (``steps.action_valid`` is False).
- **unproductive action**: a valid action after which the observable state, clocks and turn counters excluded,
  is unchanged. Invalid actions are counted separately and are not part of this measure.

What "the observable state" is comes from the environment where it can say: each env puts a ``state_key`` in its
step info (Crafter: position, facing, inventory, achievements; NetHack and MiniHack: map glyphs, player position,
status lines other than time, inventory, message). Step ``t``'s info is the info *after* action ``t``, so action
``t`` is unproductive when ``state_key[t] == state_key[t-1]``; action 0 is not assessed (the reset's info is not
stored).

Fallback, for environments without ``state_key`` (the test corridor, older stores): compare the observation the
action was taken on with the next step's observation, after removing clock and turn counters (``T:123``,
``Turn 12``, ``Step 3/100``, ``Time: 40``, ...). The last action is not assessed then (no next observation). This
is cruder than ``state_key``: a message line such as "You moved." counts as state, as NetHack's message does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CLOCK = re.compile(
    r"\b(T|Turns?|Steps?|Time|Clock|Day|Moves?)(\s*[:=#]?\s*)\d+(\s*/\s*\d+)?", flags=re.IGNORECASE
)


@dataclass
class ActionQuality:
    """Counts for one episode."""

    steps: int = 0
    invalid: int = 0
    assessed: int = 0
    """Valid actions whose effect could be judged."""
    unproductive: int = 0
    method: str = "none"
    """``state_key``, ``observation`` (the fallback) or ``none`` (nothing to compare)."""


def strip_clock(observation: str) -> str:
    """An observation with clock and turn counters blanked, for the fallback comparison."""
    return _CLOCK.sub(lambda m: m[1] + m[2] + "#", observation).strip()


def state_key_of(info_json: str | None) -> str | None:
    """The ``state_key`` in a step's info JSON, or None."""
    if not info_json:
        return None
    try:
        value = json.loads(info_json).get("state_key")
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def analyse_steps(rows: Sequence[Mapping[str, Any]]) -> ActionQuality:
    """Count invalid and unproductive actions of one episode.

    Args:
        rows: the episode's ``steps`` rows with ``step``, ``action_valid`` and either ``state_key`` (already
            extracted from ``info_json``) or ``info_json``, plus ``observation`` for the fallback.

    Returns:
        The episode's counts; see the module docstring for the definitions.
    """
    rows = sorted(rows, key=lambda r: r["step"])
    q = ActionQuality(steps=len(rows), invalid=sum(r["action_valid"] is False for r in rows))
    if not rows:
        return q
    keys = [r["state_key"] if "state_key" in r else state_key_of(r.get("info_json")) for r in rows]
    if all(k is not None for k in keys):
        q.method = "state_key"
        pairs = [(rows[t], keys[t - 1], keys[t]) for t in range(1, len(rows))]
    elif all(r.get("observation") is not None for r in rows):
        q.method = "observation"
        obs = [strip_clock(r["observation"]) for r in rows]
        pairs = [(rows[t], obs[t], obs[t + 1]) for t in range(len(rows) - 1)]
    else:
        return q
    for row, before, after in pairs:
        if row["action_valid"] is False:
            continue
        q.assessed += 1
        q.unproductive += before == after
    return q


__all__ = ["ActionQuality", "analyse_steps", "state_key_of", "strip_clock"]
