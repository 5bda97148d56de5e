"""Streaming an episode's rows to storage, and the commit protocol that makes them visible.

Shape of Ray's ``Datasink``: start, write (repeatedly, while the episode runs), then commit or fail.

- While it runs, rows are buffered and flushed as Parquet parts to a staging area,
  ``_staging/<run>/<episode>/a<attempt>/<table>/p00000.parquet``: memory stays bounded however long the episode.
- ``commit`` publishes one file per table, ``tables/<table>/<run>/<episode>.parquet`` (the staged parts
  concatenated, one part in memory at a time), each written atomically (a rename locally, a single object on
  S3), and writes the ``episodes`` row last: that row is the commit point. Committed names derive from the run
  and episode only, so a retried attempt replaces whatever an earlier, uncommitted attempt left there, and a
  plain pyarrow or Ray Data read of a table never sees an episode twice or a part of one. Every table gets its
  file, empty if the episode wrote no rows to it, so nothing of an earlier attempt survives a later one.
- An episode that already has a committed record is never committed again (``AlreadyCommitted``).
- ``fail`` records the attempt and its reason in ``attempts``, drops the staged parts and removes files an
  interrupted commit of this episode published without its record (an attempt that did commit is left as it
  is). ``repair`` (run at resume) does the same for attempts that could not record their failure (a killed
  process).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.memory.results import OpRecord
from automem.trajectory.schemas import STREAMED, TABLES
from automem.trajectory.storage import Storage, StorageError

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Committed file names: <episode>.parquet in every table but attempts, <episode>-a<attempt>.parquet there.
_DATA_NAME = re.compile(r"^(?P<episode>[A-Za-z0-9][A-Za-z0-9._-]*)\.parquet$")
_ATTEMPT_NAME = re.compile(r"^(?P<episode>[A-Za-z0-9][A-Za-z0-9._-]*)-a(?P<attempt>\d+)\.parquet$")
# Tables with one committed file per episode, published by ``commit``.
PUBLISHED = (*STREAMED, "memory_files")


class AlreadyCommitted(RuntimeError):
    """The episode already has a committed record (``record``, its ``episodes`` row, of ``attempt``); it is not
    played or committed again."""

    def __init__(self, episode_id: str, record: dict[str, Any]) -> None:
        self.episode_id = episode_id
        self.record = record
        self.attempt = int(record["attempt"])
        super().__init__(f"episode {episode_id} is already committed (attempt {self.attempt})")


def check_id(kind: str, value: str) -> str:
    """Run and episode ids become path components: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not _SAFE_ID.match(value):
        raise ValueError(f"{kind} {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


def episode_of(table: str, path: str) -> tuple[str, str] | None:
    """``(run_id, episode_id)`` of a committed file ``.../tables/<table>/<run>/<name>``, or None if the name is
    not one the writer gives."""
    run, name = path.rsplit("/", 2)[-2:]
    m = (_ATTEMPT_NAME if table == "attempts" else _DATA_NAME).match(name)
    return (run, m["episode"]) if m else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EpisodeWriter:
    """Writes one attempt of one episode.

    Args:
        storage: the store's root.
        run_id, episode_id, attempt: identify the attempt (and every file it writes).
        meta: episode-level fields for the ``episodes`` row (env_id, seed, scaffold ids, model names).
        flush_rows: buffered rows (all streamed tables together) that trigger a flush.
    """

    def __init__(
        self,
        storage: Storage,
        run_id: str,
        episode_id: str,
        attempt: int,
        meta: dict[str, Any],
        *,
        flush_rows: int = 512,
    ) -> None:
        self.storage = storage
        self.run_id = check_id("run id", run_id)
        self.episode_id = check_id("episode id", episode_id)
        self.attempt = attempt
        self.meta = meta
        self.flush_rows = flush_rows
        self.started_at = _now()
        self._buf: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._parts: dict[str, int] = defaultdict(int)
        self.bytes_written = 0
        self.rows_written = 0

    # -- keys and paths -----------------------------------------------------------------------------------------

    def _key(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "episode_id": self.episode_id, "attempt": self.attempt}

    def staging_dir(self) -> str:
        return self.storage.path("_staging", self.run_id, self.episode_id, f"a{self.attempt}")

    def _committed(self, table: str, suffix: str = "") -> str:
        return self.storage.path("tables", table, self.run_id, f"{self.episode_id}{suffix}.parquet")

    def _staged(self, table: str, k: int) -> str:
        return "/".join([self.staging_dir(), table, f"p{k:05d}.parquet"])

    def committed_record(self) -> dict[str, Any] | None:
        """This episode's committed ``episodes`` row (of whichever attempt), or None (one stat, a read if found)."""
        path = self._committed("episodes")
        if not self.storage.exists(path):
            return None
        rows = pq.read_table(pa.BufferReader(self.storage.read_bytes(path))).to_pylist()
        return rows[0] if rows else None

    def committed_attempt(self) -> int | None:
        """The attempt whose record is committed for this episode, or None."""
        row = self.committed_record()
        return None if row is None else int(row["attempt"])

    # -- write ------------------------------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Buffer the rows of one agent event (cheap; no I/O)."""
        key = self._key()
        if isinstance(event, StepEvent):
            d = event.to_dict()
            info = d.pop("info")
            d.pop("episode_id")
            self._buf["steps"].append({**key, **d, "info_json": json.dumps(info, sort_keys=True)})
        elif isinstance(event, TurnEvent):
            results = event.results
            self._buf["turns"].append(
                {
                    **key,
                    "step": event.step,
                    "phase": event.phase,
                    "turn": event.turn,
                    "model": event.model,
                    "prompt_tokens": event.prompt_tokens,
                    "prompt_tokens_est": event.prompt_tokens_est,
                    "prefix_hash": event.prefix_hash,
                    "messages_json": json.dumps(event.messages, ensure_ascii=False),
                    "completion": event.completion,
                    "completion_tokens": event.completion_tokens,
                    "latency_s": event.latency_s,
                    "constraint": event.constraint,
                    "n_ops": len(results),
                    "n_op_errors": sum(not r["ok"] for r in results),
                    "action": event.action,
                    "action_valid": event.action_valid,
                }
            )
        elif isinstance(event, OpRecord):
            self._buf["memory_ops"].append({**key, **event.to_dict()})

    def pending_rows(self) -> int:
        return sum(len(v) for v in self._buf.values())

    def should_flush(self) -> bool:
        return self.pending_rows() >= self.flush_rows

    def take(self) -> dict[str, list[dict[str, Any]]]:
        """Hand over the buffered rows (call on the thread that calls ``on_event``)."""
        batch, self._buf = dict(self._buf), defaultdict(list)
        return batch

    def write(self, batch: dict[str, list[dict[str, Any]]]) -> None:
        """Write taken rows as one staged Parquet part per table (safe to call from a worker thread)."""
        for table, rows in batch.items():
            if not rows:
                continue
            k = self._parts[table]
            self._parts[table] = k + 1
            self._write_rows(self._staged(table, k), table, rows)

    def flush(self) -> None:
        self.write(self.take())

    def _write_rows(self, path: str, table: str, rows: list[dict[str, Any]]) -> None:
        data = pa.Table.from_pylist(rows, schema=TABLES[table])
        self.storage.write_table(path, data)
        self._count(data)

    def _count(self, data: pa.Table) -> None:
        """Count rows that were written."""
        self.rows_written += data.num_rows
        self.bytes_written += data.nbytes

    # -- commit / fail -------------------------------------------------------------------------------------------

    def commit(self, end: EpisodeEnd, system_prompt: str = "") -> None:
        """Make the attempt visible: one file per table is published, then the episode row is written.

        Raises:
            AlreadyCommitted: another attempt of this episode is committed already; nothing was published, and
                this attempt's staged rows are dropped.
        """
        rest = self.take()  # rows still buffered go straight into the committed files, not through staging
        done = self.committed_record()
        if done is not None and int(done["attempt"]) != self.attempt:
            if any(self._parts.values()):
                self.storage.delete_dir(self.staging_dir())
            raise AlreadyCommitted(self.episode_id, done)
        if done is None:
            self._publish(end, system_prompt, rest)
        # After the commit point: bookkeeping only. A failure here loses no data (repair drops the staging).
        try:
            self._attempt_row("ok", None)
            if any(self._parts.values()):
                self.storage.delete_dir(self.staging_dir())
        except StorageError as exc:
            log.warning("episode %s committed, but its bookkeeping failed: %s", self.episode_id, exc)

    def _publish(self, end: EpisodeEnd, system_prompt: str, rest: dict[str, list[dict[str, Any]]]) -> None:
        key = self._key()
        for table in STREAMED:
            parts = [self._staged(table, k) for k in range(self._parts[table])]
            tail = rest.get(table, [])
            # A short episode is never staged (with no rows, an empty file still replaces a stale one).
            if not parts:
                self._write_rows(self._committed(table), table, tail)
            elif len(parts) == 1 and not tail:
                self.storage.publish(parts[0], self._committed(table))
            else:
                data = pa.Table.from_pylist(tail, schema=TABLES[table])
                self.storage.concat_parquet(self._committed(table), TABLES[table], parts, tail=data)
                self._count(data)
        files = [
            {**key, "name": n, "content": c, "bytes": len(c.encode()), "lines": c.count("\n")}
            for n, c in sorted(end.memory_files.items())
        ]
        self._write_rows(self._committed("memory_files"), "memory_files", files)
        status = "terminated" if end.terminated else "truncated"
        row = {
            **key,
            **self.meta,
            "status": status,
            "progression": end.progression,
            "episode_return": end.episode_return,
            "steps": end.steps,
            "invalid_actions": end.invalid_actions,
            "turns": end.turns,
            "prompt_tokens": end.prompt_tokens,
            "completion_tokens": end.completion_tokens,
            "llm_seconds": end.llm_seconds,
            "env_seconds": end.env_seconds,
            "wall_seconds": end.wall_seconds,
            "op_errors": end.op_errors,
            "system_prompt": system_prompt,
            "started_at": self.started_at,
            "committed_at": _now(),
        }
        self._write_rows(self._committed("episodes"), "episodes", [row])  # the commit point

    def fail(self, reason: str, worker: str = "") -> None:
        """Record a failed attempt with its reason; drop its staged rows and anything an interrupted commit
        published without the episode's record. An attempt that did commit (its runner died before returning)
        is left as it is."""
        done = self.committed_attempt()
        if done == self.attempt:
            return
        self._attempt_row("failed", reason[:4000], worker)
        if done is None:
            for table in PUBLISHED:
                self.storage.delete_file(self._committed(table))
        self.storage.delete_dir(self.staging_dir())

    def _attempt_row(self, status: str, error: str | None, worker: str = "") -> None:
        row = {
            **self._key(),
            "status": status,
            "error": error,
            "worker": worker or self.meta.get("worker", ""),
            "started_at": self.started_at,
            "finished_at": _now(),
        }
        self._write_rows(self._committed("attempts", f"-a{self.attempt}"), "attempts", [row])
