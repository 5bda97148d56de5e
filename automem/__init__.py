"""automem: language-model agents that learn to manage their own memory.

The library layer. It imports no Ray: the Ray-facing wrappers live in ``actors/``, the jobs in ``pipelines/``.
Public functions are exported lazily, so ``import automem`` stays light (no DuckDB, no pyarrow).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> (module, attribute), imported on first use.
_LAZY = {
    "query": ("automem.trajectory.sql", "query"),
    "diagnose": ("automem.diagnostics.summary", "diagnose"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'automem' has no attribute {name!r}")
