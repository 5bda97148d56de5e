"""The trajectory store: Arrow schemas, the streaming Parquet writer with its commit protocol, and the one reading
API.

Reading, committed episodes only (the rule, for every reader: ``visible_files``):

- ``open_store(root)``: the store's ``Storage``, or a one-line ``StoreError`` when there is none; ``list_runs``.
- ``load`` (Arrow tables), ``dataset`` (a pyarrow dataset), ``committed_keys``, ``committed_files``,
  ``read_manifest``.
- ``connect`` (a DuckDB connection with one view per table), ``query`` (one read-only SQL statement, also
  ``automem.query``), ``select_episodes``; SQL sees the store and nothing else unless ``unsafe_sql`` (``sandbox``).
- ``read_errors()``: what reading raises for a bad store or bad input (a reading command prints it as one line).

Ray Data reads the same rows through ``actors.data.ray_dataset`` (it imports Ray, so it lives in ``actors/``).
"""

from automem.trajectory.reader import (
    StoreFileError,
    committed_files,
    committed_keys,
    dataset,
    load,
    read_manifest,
    visible_files,
)
from automem.trajectory.runs import (
    RunBusy,
    RunLease,
    committed_episode_ids,
    repair,
    staged_attempts,
    write_manifest,
)
from automem.trajectory.sandbox import UnsafeSQLError
from automem.trajectory.schemas import SCHEMA_VERSION, TABLES
from automem.trajectory.sql import PHASE_ORDER_SQL, connect, query, select_episodes
from automem.trajectory.storage import PermanentStorageError, Storage, StorageError, s3_filesystem
from automem.trajectory.store import READ_RETRY_S, StoreError, list_runs, open_store, read_errors
from automem.trajectory.writer import AlreadyCommitted, EpisodeWriter, check_id

__all__ = [
    "PHASE_ORDER_SQL",
    "READ_RETRY_S",
    "SCHEMA_VERSION",
    "TABLES",
    "AlreadyCommitted",
    "EpisodeWriter",
    "PermanentStorageError",
    "RunBusy",
    "RunLease",
    "Storage",
    "StorageError",
    "StoreError",
    "StoreFileError",
    "UnsafeSQLError",
    "check_id",
    "committed_episode_ids",
    "committed_files",
    "committed_keys",
    "connect",
    "dataset",
    "list_runs",
    "load",
    "open_store",
    "query",
    "read_errors",
    "read_manifest",
    "repair",
    "s3_filesystem",
    "select_episodes",
    "staged_attempts",
    "visible_files",
    "write_manifest",
]
