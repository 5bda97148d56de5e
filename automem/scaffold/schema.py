"""The scaffold as strict data: prompts, memory-file schema, operations, quotas, context budget, turns, sampling.

A scaffold is what Loop 1 revises. It is data, never code: a reviewer's YAML is validated here (unknown keys and
bad values are rejected with the field named) and nothing in it is executed.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from automem.memory.ops import ALL_OPS, READ_ONLY_OPS
from automem.memory.paths import PathViolation, check_name
from automem.memory.quotas import Quotas

_STRICT = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[A-Za-z0-9]{1,8}$")


class MemoryFile(BaseModel):
    """One file in the memory schema."""

    model_config = _STRICT
    name: str
    """Relative name with an extension, e.g. ``notes.md`` or ``places/caves.md``."""
    purpose: str
    """What the agent should keep in this file; shown in every prompt."""
    initial: str = ""
    """Content the file starts each episode with (written through the op log at step 0)."""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        try:
            check_name(v)
        except PathViolation as exc:
            raise ValueError(str(exc)) from None
        if not _FILE_NAME.match(v):
            raise ValueError("file names are letters, digits, _ and -, folders split by /, with an extension")
        return v


class Prompts(BaseModel):
    """The routine texts. ``system`` opens every prompt; the others start each phase's instruction."""

    model_config = _STRICT
    system: str = Field(min_length=1)
    """Who the agent is and what it is playing; static for the whole run."""
    log: str = Field(min_length=1)
    """LOG routine: record what the last action led to (the outcome is visible only now)."""
    plan: str = Field(min_length=1)
    """PLAN routine: consult memory (read-only) before choosing."""
    action: str = Field(min_length=1)
    """The action commit: answer with exactly one action name."""


class ContextBudget(BaseModel):
    """What memory goes into each prompt, and the token limit every prompt must fit."""

    model_config = _STRICT
    max_prompt_tokens: int = Field(3072, ge=256)
    """Prompt tokens allowed; dynamic parts are cut (oldest memory lines first) until the prompt fits."""
    include_files: tuple[str, ...] = ()
    """Files whose last lines are shown in every prompt."""
    tail_lines: int = Field(8, ge=0)
    """How many last lines of each included file are shown."""
    max_observation_chars: int = Field(2400, ge=64)
    """Observation text beyond this is cut before the token budget is applied."""


class TurnLimits(BaseModel):
    """Model turns per step and phase."""

    model_config = _STRICT
    log_turns: int = Field(1, ge=0, le=8)
    """Memory turns in the LOG routine (0 disables LOG)."""
    plan_turns: int = Field(1, ge=0, le=8)
    """Read-only memory turns in the PLAN routine before the action commit."""


class Sampling(BaseModel):
    """Sampling parameters sent with every request."""

    model_config = _STRICT
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Sampling temperature (0 is greedy)."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    memory_max_tokens: int = Field(160, ge=8, le=4096)
    """Completion budget of a memory turn."""
    action_max_tokens: int = Field(8, ge=1, le=512)
    """Completion budget of the action commit."""


class Scaffold(BaseModel):
    """Everything that configures the agent's memory behaviour, as data."""

    model_config = _STRICT
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    """Name of this scaffold, e.g. ``crafter-v0``."""
    parent_id: str | None = None
    """The scaffold this one was revised from (Loop 1 lineage)."""
    env: str = Field(pattern=r"^[a-z0-9-]+$")
    """Environment family it is written for: ``crafter``, ``minihack``, ``nethack`` (or ``any``)."""
    description: str = ""
    """A sentence on what is different about this scaffold."""
    prompts: Prompts
    """Routine texts."""
    files: tuple[MemoryFile, ...] = ()
    """The memory file schema."""
    operations: tuple[str, ...] = ALL_OPS
    """Enabled memory operations (a subset of the registry)."""
    quotas: Quotas = Quotas()
    """Size and count limits."""
    context: ContextBudget = ContextBudget()
    """Prompt budget."""
    turns: TurnLimits = TurnLimits()
    """Turns per phase."""
    sampling: Sampling = Sampling()
    """Sampling parameters."""
    constrained: bool = True
    """Send each turn's grammar to the server (structured outputs); False lets the model write freely."""
    allow_new_files: bool = True
    """Writes may create files outside the schema (still under the quotas)."""
    default_action: str = "noop"
    """Action taken when the model's action is unreadable or invalid (counted); the env's first if unknown."""

    @field_validator("operations")
    @classmethod
    def _ops_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        v = tuple(o.upper() for o in v)
        unknown = [o for o in v if o not in ALL_OPS]
        if unknown:
            raise ValueError(f"unknown operations {unknown}; known: {list(ALL_OPS)}")
        if len(set(v)) != len(v):
            raise ValueError("operations are listed twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Scaffold:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("files: two files share a name")
        missing = [n for n in self.context.include_files if n not in names]
        if missing:
            raise ValueError(f"context.include_files names files not in the schema: {missing}")
        if len(names) > self.quotas.max_files:
            raise ValueError("files: more files than quotas.max_files")
        if self.turns.plan_turns and not READ_ONLY_OPS.intersection(self.operations):
            raise ValueError("turns.plan_turns > 0 but no read-only operation is enabled")
        return self

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in self.files]
