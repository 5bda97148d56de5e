"""Loop 2: datasets of the agent's own good memory turns, selected from the trajectory store.

- ``build_dataset(DatasetConfig(...), out)``: select (``STRATEGIES``, joined by ``+``), post-process, dedupe, and
  write ``datasets/<id>/`` (Parquet rows, then ``manifest.json``); ``DistillError`` for input that gives no dataset.
- ``read_source``: the committed LOG/PLAN turns with the exact prompt the agent saw.
- ``postprocess``: a completion reduced to the operations its phase allows, ending with ``DONE``.
"""

from automem.distill.config import DatasetConfig
from automem.distill.dataset import (
    DATASET_SCHEMA,
    MANIFEST_FILE,
    ROWS_FILE,
    DatasetResult,
    DistillError,
    build_dataset,
    build_rows,
)
from automem.distill.postprocess import postprocess
from automem.distill.strategies import STRATEGIES, Verdict, parse_strategy, select
from automem.distill.turns import MemoryTurn, Source, read_source

__all__ = [
    "DATASET_SCHEMA",
    "MANIFEST_FILE",
    "ROWS_FILE",
    "STRATEGIES",
    "DatasetConfig",
    "DatasetResult",
    "DistillError",
    "MemoryTurn",
    "Source",
    "Verdict",
    "build_dataset",
    "build_rows",
    "parse_strategy",
    "postprocess",
    "read_source",
    "select",
]
