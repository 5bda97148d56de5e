"""automem: language-model agents that learn to manage their own memory.

The library layer. It imports no Ray: the Ray-facing wrappers live in ``actors/``, the jobs in ``pipelines/``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
