"""Streaming an episode's rows to storage, and the commit protocol that makes them visible.

Shape of Ray's ``Datasink``: start, write (repeatedly, while the episode runs), then commit or fail. Until its
commit point, everything an attempt writes stays under its staging folder, ``_staging/<run>/<episode>/a<attempt>/``:

- ``claim`` creates ``claim.json`` there with ``Storage.create_exclusive`` before the attempt plays, so an attempt
  number belongs to one writer, ever (a number whose attempt finished has its ``attempts`` row, which the claim
  checks too): two plays never share a staging folder or an attempt key. ``commit`` claims if the writer has not.
- While it runs, rows are buffered and flushed as Parquet parts, ``<table>/p00000.parquet``: memory stays bounded
  however long the episode.
- ``commit`` stages one final file per table, ``final/<table>.parquet`` (the parts and the rows still buffered,
  one part in memory at a time; the memory files; the ``episodes`` record last), checking that every row carries
  this attempt's key (``CommitRefused`` otherwise). Then it creates the record
  ``tables/episodes/<run>/<episode>.parquet`` with ``create_exclusive``: that is the commit point, and of several
  attempts of an episode exactly one passes it (the others get ``AlreadyCommitted`` and drop their staging). Only
  then are the staged files published to ``tables/<table>/<run>/<episode>.parquet`` (a rename locally, a
  server-side copy on S3), the ``ok`` row written to ``attempts``, and the staging dropped.
- So nothing reaches ``tables/`` before the commit point: a plain pyarrow, Ray Data or DuckDB read of a table
  folder never sees a row of an uncommitted episode, nor an episode twice. The converse has a window: from the
  commit point until the last publish (a few file operations), a committed episode's rows can be missing from the
  tables not yet published; if the process dies there, they stay missing until a resume's ``repair`` rolls the
  episode forward from the staging, which is kept until everything is published.
- ``fail`` records the attempt and its reason in ``attempts`` and drops its staging; an attempt that did commit
  (its runner died before returning) is rolled forward instead. ``repair`` (run at resume) does the same for
  attempts whose process was killed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.memory.results import OpRecord
from automem.metrics import BYTES_WRITTEN, COMMIT_LATENCY, NO_METRICS, MetricsSink
from automem.trajectory.schemas import STREAMED, TABLES
from automem.trajectory.storage import Storage, StorageError, parquet_bytes

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Committed file names: <episode>.parquet in every table but attempts, <episode>-a<attempt>.parquet there.
_DATA_NAME = re.compile(r"^(?P<episode>[A-Za-z0-9][A-Za-z0-9._-]*)\.parquet$")
_ATTEMPT_NAME = re.compile(r"^(?P<episode>[A-Za-z0-9][A-Za-z0-9._-]*)-a(?P<attempt>\d+)\.parquet$")
# Tables with one committed file per episode, published by ``commit`` after the record.
PUBLISHED = (*STREAMED, "memory_files")
_KEY_COLUMNS = ("run_id", "episode_id", "attempt")
INTERRUPTED = "interrupted: its driver stopped before it finished"
"""The error recorded (by ``repair``) for an attempt whose process died with it."""


class AlreadyCommitted(RuntimeError):
    """The episode already has a committed record (``record``, its ``episodes`` row, of ``attempt``); it is not
    played or committed again."""

    def __init__(self, episode_id: str, record: dict[str, Any]) -> None:
        self.episode_id = episode_id
        self.record = record
        self.attempt = int(record["attempt"])
        super().__init__(f"episode {episode_id} is already committed (attempt {self.attempt})")


class AttemptTaken(RuntimeError):
    """This attempt number of the episode belongs to another writer (or ran before); nothing of it was touched.
    Play the episode as a later attempt."""


class CommitRefused(RuntimeError):
    """A staged file of the attempt holds rows of another attempt or episode; nothing was committed."""


class CommitIncomplete(RuntimeError):
    """A committed attempt's files are neither staged nor published with its key (lost, or another play's)."""


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


def attempt_of(path: str) -> tuple[str, int] | None:
    """``(episode_id, attempt)`` of an ``attempts`` file ``.../<episode>-a<attempt>.parquet``, or None."""
    m = _ATTEMPT_NAME.match(path.rsplit("/", 1)[-1])
    return (m["episode"], int(m["attempt"])) if m else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EpisodeWriter:
    """Writes one attempt of one episode.

    Args:
        storage: the store's root.
        run_id, episode_id, attempt: identify the attempt (and every file it writes).
        meta: episode-level fields for the ``episodes`` row (env_id, seed, scaffold ids, model names).
        flush_rows: buffered rows (all streamed tables together) that trigger a flush.
        metrics: where bytes written and commit latency are counted.
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
        metrics: MetricsSink = NO_METRICS,
    ) -> None:
        self.storage = storage
        self.metrics = metrics
        self.run_id = check_id("run id", run_id)
        self.episode_id = check_id("episode id", episode_id)
        self.attempt = attempt
        self.meta = meta
        self.flush_rows = flush_rows
        self.started_at = _now()
        self.token = uuid.uuid4().hex
        self.claimed = False
        self.committed = False
        self._buf: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._parts: dict[str, int] = defaultdict(int)
        self.bytes_written = 0
        self.rows_written = 0

    # -- keys and paths -----------------------------------------------------------------------------------------

    def _key(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "episode_id": self.episode_id, "attempt": self.attempt}

    def staging_dir(self) -> str:
        return self.storage.path("_staging", self.run_id, self.episode_id, f"a{self.attempt}")

    def claim_path(self) -> str:
        return f"{self.staging_dir()}/claim.json"

    def _committed(self, table: str, suffix: str = "") -> str:
        return self.storage.path("tables", table, self.run_id, f"{self.episode_id}{suffix}.parquet")

    def _staged(self, table: str, k: int) -> str:
        return "/".join([self.staging_dir(), table, f"p{k:05d}.parquet"])

    def _final(self, table: str) -> str:
        return f"{self.staging_dir()}/final/{table}.parquet"

    def committed_record(self) -> dict[str, Any] | None:
        """This episode's committed ``episodes`` row (of whichever attempt), or None (one stat, a read if found)."""
        path = self._committed("episodes")
        if not self.storage.exists(path):
            return None
        try:
            rows = pq.read_table(pa.BufferReader(self.storage.read_bytes(path))).to_pylist()
        except FileNotFoundError:
            return None
        return rows[0] if rows else None

    def committed_attempt(self) -> int | None:
        """The attempt whose record is committed for this episode, or None."""
        row = self.committed_record()
        return None if row is None else int(row["attempt"])

    # -- claim --------------------------------------------------------------------------------------------------

    def claim(self) -> None:
        """Take this attempt number before playing, so no other writer can use it (idempotent).

        Raises:
            AttemptTaken: another writer holds the number, or an attempt with it already finished.
        """
        if self.claimed:
            return
        body = {
            "token": self.token,
            "worker": self.meta.get("worker", ""),
            "started_at": self.started_at.isoformat(),
        }
        if not self.storage.create_exclusive(self.claim_path(), json.dumps(body).encode()):
            raise AttemptTaken(
                f"attempt {self.attempt} of episode {self.episode_id} is held by another writer "
                f"({self.claim_path()} exists)"
            )
        # A finished attempt wrote its attempts row before it dropped its staging (claim included).
        if self.storage.exists(self._committed("attempts", f"-a{self.attempt}")):
            self.storage.delete_file(self.claim_path())
            raise AttemptTaken(f"attempt {self.attempt} of episode {self.episode_id} has run already")
        self.claimed = True

    def claim_info(self) -> dict[str, Any]:
        """What ``claim.json`` says (worker, started_at), or {} if the attempt has no readable claim."""
        try:
            return json.loads(self.storage.read_bytes(self.claim_path()))
        except (FileNotFoundError, ValueError):
            return {}

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
            self._write(self._staged(table, k), pa.Table.from_pylist(rows, schema=TABLES[table]))

    def flush(self) -> None:
        self.write(self.take())

    def _write(self, path: str, data: pa.Table) -> None:
        self.storage.write_table(path, data)
        self._count(data)

    def _count(self, data: pa.Table) -> None:
        self.rows_written += data.num_rows
        self.bytes_written += data.nbytes
        self.metrics.inc(BYTES_WRITTEN, data.nbytes, {"run_id": self.run_id})

    # -- commit / fail -------------------------------------------------------------------------------------------

    def commit(self, end: EpisodeEnd, system_prompt: str = "") -> None:
        """Make the attempt visible: stage its final files, create its record (the commit point), then publish.

        Raises:
            AlreadyCommitted: another attempt of this episode is committed; nothing of this one was published, and
                its staging is dropped.
            AttemptTaken: the attempt number is another writer's (claimed at commit by a writer that had not).
            CommitRefused: a staged file holds rows that are not this attempt's; nothing was committed.
        """
        if self.committed:
            return
        t0 = time.perf_counter()
        rest = self.take()
        self.claim()
        record = self._stage(end, system_prompt, rest)
        if not self.storage.create_exclusive(self._committed("episodes"), record):  # the commit point
            done = self.committed_record()
            if done is None:
                raise StorageError(f"the record of episode {self.episode_id} exists but could not be read")
            if int(done["attempt"]) != self.attempt:
                self.storage.delete_dir(self.staging_dir())
                raise AlreadyCommitted(self.episode_id, done)
            # Our own record (an earlier try of this commit got that far): finish it.
        self.committed = True
        try:
            self._publish(verify=False, ok_row=True)
        except (StorageError, OSError, CommitIncomplete) as exc:
            log.error(
                "episode %s is committed, but publishing its rows failed (a resume repairs it): %s",
                self.episode_id,
                exc,
            )
        self.metrics.observe(COMMIT_LATENCY, time.perf_counter() - t0, {"run_id": self.run_id})

    def _stage(self, end: EpisodeEnd, system_prompt: str, rest: dict[str, list[dict[str, Any]]]) -> bytes:
        """Write every table's final file under ``final/`` (the record last); returns the record's bytes."""
        key = self._key()
        for table in STREAMED:
            parts = [self._staged(table, k) for k in range(self._parts[table])]
            tail = pa.Table.from_pylist(rest.get(table, []), schema=TABLES[table])
            self._check(table, tail)
            if len(parts) == 1 and not tail.num_rows:
                self._check_file(table, parts[0], CommitRefused)
                self.storage.publish(parts[0], self._final(table))
                continue
            if parts:
                self.storage.concat_parquet(
                    self._final(table),
                    TABLES[table],
                    parts,
                    tail=tail,
                    check=functools.partial(self._check, table),
                )
                self._count(tail)
            else:  # a short episode is never staged in parts; an empty file still goes with the others
                self._write(self._final(table), tail)
        files = [
            {**key, "name": n, "content": c, "bytes": len(c.encode()), "lines": c.count("\n")}
            for n, c in sorted(end.memory_files.items())
        ]
        self._write(self._final("memory_files"), pa.Table.from_pylist(files, schema=TABLES["memory_files"]))
        row = {
            **key,
            **self.meta,
            "status": "terminated" if end.terminated else "truncated",
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
        record = pa.Table.from_pylist([row], schema=TABLES["episodes"])
        # Staged too, last: a roll-forward publishes a staging only if its record is the committed one (the same
        # bytes), so the rows and the record it makes visible are of one play.
        self._write(self._final("episodes"), record)
        return parquet_bytes(record)

    def _check(self, table: str, rows: pa.Table, error: type[Exception] = CommitRefused) -> None:
        """Raise ``error`` unless every row of ``rows`` has this attempt's key."""
        for col, want in self._key().items():
            got = pc.unique(rows.column(col)).to_pylist()
            if got not in ([], [want]):
                raise error(
                    f"{table} rows of episode {self.episode_id} attempt {self.attempt} have {col} {got}"
                )

    def _check_file(self, table: str, path: str, error: type[Exception]) -> None:
        """``_check`` of a Parquet file from its footer's statistics (the key columns are read if it has none)."""
        meta = self.storage.parquet_metadata(path)
        key = self._key()
        names = meta.schema.to_arrow_schema().names
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if not group.num_rows:
                continue
            for col in _KEY_COLUMNS:
                stats = group.column(names.index(col)).statistics
                if stats is None or not stats.has_min_max:
                    with self.storage.fs.open_input_file(path) as f:
                        self._check(table, pq.read_table(f, columns=list(_KEY_COLUMNS)), error)
                    return
                if not stats.min == stats.max == key[col]:
                    raise error(
                        f"{path} holds {table} rows with {col} {stats.min!r}..{stats.max!r}, not {key[col]!r}"
                    )

    def _publish(self, *, verify: bool, ok_row: bool) -> None:
        """After the commit point: publish every staged final file, write the ``ok`` row, drop the staging."""
        staged_record = self._final("episodes")
        if verify and self.storage.exists(staged_record):
            if self.storage.read_bytes(staged_record) != self.storage.read_bytes(self._committed("episodes")):
                raise CommitIncomplete(
                    f"the staging of episode {self.episode_id} attempt {self.attempt} is not of the play its "
                    "committed record is of"
                )
        missing = []
        for table in PUBLISHED:
            src, dst = self._final(table), self._committed(table)
            if verify:
                if self.storage.exists(src):
                    self._check_file(table, src, CommitIncomplete)
                elif self.storage.exists(dst):  # published before the interruption (a rename moves it)
                    self._check_file(table, dst, CommitIncomplete)
                    continue
                else:
                    missing.append(table)
                    continue
            self.storage.publish(src, dst)
        if missing:
            raise CommitIncomplete(
                f"episode {self.episode_id} attempt {self.attempt} is committed but its {', '.join(missing)} "
                "files are neither staged nor published"
            )
        if ok_row:
            info = self.claim_info() if not self.claimed else {}
            self.record_attempt("ok", None, info.get("worker", ""), info.get("started_at"))
        self.storage.delete_dir(self.staging_dir())

    def roll_forward(self, *, ok_row: bool = True) -> None:
        """Finish the commit of this attempt, whose record is committed: publish what it staged and is not yet
        in ``tables/`` (checking each file's key), write its ``ok`` row (unless ``ok_row`` is False: it has one),
        drop its staging. Safe to repeat.

        Raises:
            CommitIncomplete: a table's file is neither staged nor published with this attempt's key.
        """
        self._publish(verify=True, ok_row=ok_row)

    def fail(self, reason: str, worker: str = "") -> None:
        """Record a failed attempt with its reason and drop its staged rows. An attempt that did commit (its runner
        died before returning) is rolled forward instead: recorded ``ok``, its rows published."""
        if self.committed_attempt() == self.attempt:
            try:
                self.roll_forward()
            except CommitIncomplete as exc:
                log.error("%s", exc)
            return
        info = self.claim_info() if not self.claimed else {}
        self.record_attempt("failed", reason[:4000], worker or info.get("worker", ""), info.get("started_at"))
        self.storage.delete_dir(self.staging_dir())

    def record_attempt(
        self, status: str, error: str | None, worker: str = "", started_at: str | dt.datetime | None = None
    ) -> None:
        """Write the attempt's row in ``attempts`` (``ok`` or ``failed`` with ``error``); ``started_at`` defaults to
        when this writer was made."""
        if isinstance(started_at, str):
            started_at = dt.datetime.fromisoformat(started_at)
        row = {
            **self._key(),
            "status": status,
            "error": error,
            "worker": worker or self.meta.get("worker", ""),
            "started_at": started_at or self.started_at,
            "finished_at": _now(),
        }
        self._write(
            self._committed("attempts", f"-a{self.attempt}"),
            pa.Table.from_pylist([row], schema=TABLES["attempts"]),
        )
