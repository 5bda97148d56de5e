"""Branch plans: which stored episodes to play on from which step, under which settings, how many times.

A branch run is an ordinary rollout (``run_rollout``) whose ``RolloutConfig.branch`` holds a :class:`BranchPlan`:
its episodes are not new games from a seed but stored episodes resumed at a step (``automem.branch.restore``),
played on for ``max_steps`` more steps. Each (point, arm, copy) is one episode of the run, committed exactly once
like any other, with the id ``<point>-<arm>-c<copy>`` (``0003-change-c1``); the plan, stored in the run's manifest,
says for every episode which parent (run, episode, attempt, step) it continues and what changed: the ``branches``
view of ``automem query`` lists it.

- A **point** is a stored episode and a step ``t`` (``restore``'s meaning: before step ``t``'s LOG turn), and
  optionally memory turns whose operations an arm may drop (``drop_turns``; memory credit, ``automem branch
  credit``).
- An **arm** is one set of settings: the scaffold, the models, edits to the restored memory, whether the point's
  dropped turns are dropped. Unset fields keep the parent's, so an arm with nothing set is the control: the
  original episode played on from ``t``.
- **Copies**: each (point, arm) is played ``copies`` times; copy ``k`` samples with seed ``sampling_seed + k`` in
  every arm, so arms are compared on common random numbers, paired by point and copy.

Branch episodes keep the parent's step numbers (a branch at 12 stores steps 12, 13, ...); nothing before ``t`` is
stored again. Their memory's op log starts with the restored files as ``init`` writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from automem.config import StrictConfig
from automem.scaffold.schema import Scaffold

ARM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
BRANCH_EPISODE_ID = re.compile(r"^\d{4,}-[a-z][a-z0-9_]{0,23}-c\d+$")
"""The shape of a branch episode's id (``BranchPlan.episode_id``); a rollout's ids (``000003-crafter-v0-s3``) never
have it, so readers need not open an ordinary run's manifest to know it has no branches."""
TURN_KEY = re.compile(r"^(\d+):(log|plan):(\d+)$")


class BranchPoint(StrictConfig):
    """One stored episode and the step to branch it at."""

    episode: str
    """The parent episode's id."""
    step: int = Field(ge=0)
    """Branch before this step's LOG turn (``automem branch restore --at-step``)."""
    attempt: int | None = Field(None, ge=1)
    """The parent's committed attempt (None: whichever committed; the plan records the one found)."""
    drop_turns: list[str] = Field(default_factory=list)
    """Memory turns ``STEP:PHASE:TURN`` (``5:log:0``) of steps before ``step`` whose operations are removed from
    the restored memory in arms with ``drop: true``."""

    @field_validator("drop_turns")
    @classmethod
    def _turn_keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if not TURN_KEY.match(key):
                raise ValueError(f"bad memory turn {key!r}: write STEP:PHASE:TURN, e.g. 5:log:0")
        return v

    @model_validator(mode="after")
    def _dropped_before_step(self) -> BranchPoint:
        for key in self.drop_turns:
            if int(key.split(":")[0]) >= self.step:
                raise ValueError(
                    f"turn {key} is not before the branch step {self.step}: it cannot be dropped"
                )
        return self


class BranchArm(StrictConfig):
    """One set of settings to play the points on with; what is not set stays the parent's."""

    name: str
    """Short name, part of the episode ids (``control``, ``change``, ``recorded``, ``removed``)."""
    scaffold: Scaffold | None = None
    """The scaffold to play on with (None: the parent episode's)."""
    model: str | None = None
    """The action model (None: the parent's)."""
    memory_model: str | None = None
    """The memory model, e.g. ``BASE:ADAPTER`` (None: the parent's; with ``model`` set, ``model``)."""
    memory_edit: list[str] = Field(default_factory=list)
    """Memory operations (``WRITE notes.md "..."``, ``APPEND ...``) applied to the restored memory before play."""
    drop: bool = False
    """Remove the operations of each point's ``drop_turns`` from the restored memory."""

    @field_validator("memory_edit")
    @classmethod
    def _edits_parse(cls, v: list[str]) -> list[str]:
        from automem.memory.grammar import parse
        from automem.memory.ops import ALL_OPS
        from automem.memory.results import OpResult

        for text in v:
            for item in parse(text, ALL_OPS):
                if isinstance(item, OpResult) and not item.ok:
                    raise ValueError(f"memory edit {text[:80]!r}: {item.error}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ARM_NAME.match(v):
            raise ValueError(f"arm name {v!r}: lowercase letters, digits and '_', starting with a letter")
        return v

    def changes(self) -> dict[str, Any]:
        """What this arm changes, as JSON values (empty for a control)."""
        out: dict[str, Any] = {}
        if self.scaffold is not None:
            out["scaffold"] = self.scaffold.id
        for key in ("model", "memory_model"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.memory_edit:
            out["memory_edit"] = list(self.memory_edit)
        if self.drop:
            out["drop"] = True
        return out


class BranchPlan(StrictConfig):
    """The stored episodes a branch run continues, the arms it plays them under, and how many copies."""

    parent_out: str
    """The parent run's store: a folder or ``s3://bucket/prefix``."""
    parent_run: str
    """The parent run's id."""
    points: list[BranchPoint] = Field(min_length=1)
    """Where to branch."""
    arms: list[BranchArm] = Field(min_length=1)
    """Settings to play each point under (the first is the reference of comparisons, normally the control)."""
    copies: int = Field(1, ge=1, le=1000)
    """Plays of each (point, arm), with sampling seeds ``sampling_seed + k``."""
    sampling_seed: int = Field(0, ge=0, lt=2**31 - 1000)
    """Sampling seed of copy 0."""

    @model_validator(mode="after")
    def _unique_arms(self) -> BranchPlan:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}")
        return self

    @property
    def episodes(self) -> int:
        """Episodes of the run: points x arms x copies."""
        return len(self.points) * len(self.arms) * self.copies

    def episode_id(self, point: int, arm: str, copy: int) -> str:
        """The id of one branch episode."""
        return f"{point:04d}-{arm}-c{copy}"


@dataclass(frozen=True)
class BranchStart:
    """Where one branch episode starts: what the runner restores before it plays (``EpisodeJob.branch``)."""

    parent_out: str
    parent_run: str
    parent_episode: str
    parent_attempt: int
    step: int
    sampling_seed: int
    drop_turns: tuple[str, ...] = ()
    memory_edit: tuple[str, ...] = ()


def turn_key(step: int, phase: str, turn: int) -> str:
    """``STEP:PHASE:TURN``, the form ``drop_turns`` uses."""
    return f"{step}:{phase}:{turn}"


__all__ = ["BranchArm", "BranchPlan", "BranchPoint", "BranchStart", "turn_key"]
