"""The trajectory store: Arrow schemas, streaming Parquet writer with a commit protocol, readers."""

from automem.trajectory.reader import committed_files, committed_keys, dataset, load, read_manifest
from automem.trajectory.runs import (
    RunBusy,
    RunLease,
    committed_episode_ids,
    repair,
    staged_attempts,
    write_manifest,
)
from automem.trajectory.schemas import SCHEMA_VERSION, TABLES
from automem.trajectory.storage import PermanentStorageError, Storage, StorageError, s3_filesystem
from automem.trajectory.writer import AlreadyCommitted, EpisodeWriter, check_id

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyCommitted",
    "RunBusy",
    "RunLease",
    "committed_files",
    "staged_attempts",
    "TABLES",
    "EpisodeWriter",
    "Storage",
    "PermanentStorageError",
    "StorageError",
    "check_id",
    "committed_episode_ids",
    "committed_keys",
    "dataset",
    "load",
    "read_manifest",
    "repair",
    "s3_filesystem",
    "write_manifest",
]
