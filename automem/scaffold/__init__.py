"""The scaffold as data: schema, built-in v0 scaffolds, load/save, content id, diff."""

from automem.scaffold.io import (
    ScaffoldError,
    builtin_names,
    content_id,
    diff,
    from_yaml,
    load,
    save,
    to_yaml,
)
from automem.scaffold.schema import ContextBudget, MemoryFile, Prompts, Sampling, Scaffold, TurnLimits

__all__ = [
    "ContextBudget",
    "MemoryFile",
    "Prompts",
    "Sampling",
    "Scaffold",
    "ScaffoldError",
    "TurnLimits",
    "builtin_names",
    "content_id",
    "diff",
    "from_yaml",
    "load",
    "save",
    "to_yaml",
]
