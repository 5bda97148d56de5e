"""Streaming an episode's rows to storage, and the commit protocol that makes them visible.

Shape of Ray's ``Datasink``: start, write (repeatedly, while the episode runs), then commit or fail.

- While it runs, rows are buffered and flushed as Parquet parts to a staging area,
  ``_staging/<run>/<episode>/a<attempt>/<table>/p00000.parquet``: memory stays bounded however long the episode.
- ``commit`` moves the parts to ``tables/<table>/<run>/<episode>-p00000.parquet`` and writes the ``episodes`` row
  last. Names derive from the run, episode and attempt, never from a counter, so a retried attempt overwrites
  rather than duplicates; a later attempt first removes whatever a crashed commit of an earlier one left.
  ``automem.trajectory.load`` shows only rows of committed episodes; ``repair`` (run at resume) deletes rows
  a crash left without their episode record, so plain pyarrow and Ray Data reads see them neither.
- ``fail`` records the attempt and its reason in ``attempts`` and drops the staged parts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from typing import Any

import pyarrow as pa

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.memory.results import OpRecord
from automem.trajectory.schemas import STREAMED, TABLES
from automem.trajectory.storage import Storage

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A committed file of a streamed table or of memory_files: <episode>-p00000.parquet or <episode>.parquet.
PART_NAME = re.compile(r"^(?P<episode>.+?)(?:-p\d{5})?\.parquet$")


def check_id(kind: str, value: str) -> str:
    """Run and episode ids become path components: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not _SAFE_ID.match(value):
        raise ValueError(f"{kind} {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


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

    def _committed(self, table: str, suffix: str) -> str:
        return self.storage.path("tables", table, self.run_id, f"{self.episode_id}{suffix}.parquet")

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
            path = "/".join([self.staging_dir(), table, f"p{k:05d}.parquet"])
            self._write_rows(path, table, rows)

    def flush(self) -> None:
        self.write(self.take())

    def _write_rows(self, path: str, table: str, rows: list[dict[str, Any]]) -> None:
        data = pa.Table.from_pylist(rows, schema=TABLES[table])
        self.storage.write_table(path, data)
        self.rows_written += len(rows)
        self.bytes_written += data.nbytes

    # -- commit / fail -------------------------------------------------------------------------------------------

    def commit(self, end: EpisodeEnd, system_prompt: str = "") -> None:
        """Make the attempt visible: staged parts move to their final names, then the episode row is written."""
        self.flush()
        key = self._key()
        files = [
            {**key, "name": n, "content": c, "bytes": len(c.encode()), "lines": c.count("\n")}
            for n, c in sorted(end.memory_files.items())
        ]
        if self.attempt > 1:
            self._remove_committed_leftovers()
        for table in STREAMED:
            for k in range(self._parts[table]):
                src = "/".join([self.staging_dir(), table, f"p{k:05d}.parquet"])
                self.storage.move(src, self._committed(table, f"-p{k:05d}"))
        self._write_rows(self._committed("memory_files", ""), "memory_files", files)
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
        self._write_rows(self._committed("episodes", ""), "episodes", [row])  # the commit point
        self._attempt_row("ok", None)
        self.storage.delete_dir(self.staging_dir())

    def fail(self, reason: str, worker: str = "") -> None:
        """Record a failed attempt with its reason; its staged rows are dropped."""
        self._attempt_row("failed", reason[:4000], worker)
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

    def _remove_committed_leftovers(self) -> None:
        for table in (*STREAMED, "memory_files"):
            folder = self.storage.path("tables", table, self.run_id)
            for path in self.storage.list_files(folder):
                m = PART_NAME.match(path.rsplit("/", 1)[-1])
                if m and m["episode"] == self.episode_id:
                    self.storage.delete_file(path)
