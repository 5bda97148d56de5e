"""Reading the committed store: pyarrow datasets and ``load``, both of committed episodes only.

The files of a table are ``tables/<table>/<run>/<episode>.parquet`` (``-a<attempt>`` in ``attempts``). An
episode is committed once its ``episodes`` file exists; the other tables' files are written just before it, so a
listing of a folder can briefly show an episode whose record is being written (or, after a killed process, one
whose commit never finished, until ``repair``). The readers here list only files of committed episodes.

The commit records are one small file per episode, so reading them costs per file (most of a query's time on a
large store). A finished rollout therefore also writes ``runs/<run>/episodes.parquet``, the run's records in one
file (``write_episode_index``): a cache outside ``tables/`` (no plain read of a table folder sees it twice) that
the readers use for the episodes whose own record file is listed, reading the others' files as usual. Records are
never rewritten once committed, so an index can be behind the files but never contradict them.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from automem.trajectory.schemas import TABLES
from automem.trajectory.storage import Storage
from automem.trajectory.writer import episode_of


def _storage(root: str | Storage) -> Storage:
    return root if isinstance(root, Storage) else Storage(root)


def table_files(root: str | Storage, table: str, run_id: str | None = None) -> list[str]:
    """Every Parquet file in ``tables/<table>/`` (committed or not), as paths on ``Storage(root).fs``; with
    ``run_id``, only that run's (one listing of ``tables/<table>/<run>/``)."""
    if table not in TABLES:
        raise KeyError(f"no table {table!r}; tables: {', '.join(TABLES)}")
    st = _storage(root)
    if run_id is None:
        return [f for f in st.list_files(st.path("tables", table)) if f.endswith(".parquet")]
    # Only files right in the run's folder (a run id is one path component; "a/b" or ".." names no run).
    return [
        f
        for f in st.list_files(st.path("tables", table, run_id))
        if f.endswith(".parquet") and f.rsplit("/", 2)[-2] == run_id
    ]


def committed_files(
    root: str | Storage, table: str, keys: pa.Table | None = None, run_id: str | None = None
) -> list[str]:
    """The files of ``table`` that belong to committed episodes (``episodes`` and ``attempts``: all of them).

    Args:
        root: local folder or ``s3://bucket/prefix``.
        table: one of the store's tables.
        keys: the committed keys (``committed_keys``), when the caller already has them.
        run_id: only this run's files.
    """
    st = _storage(root)
    files = table_files(st, table, run_id)
    if table in ("episodes", "attempts"):
        return files
    keys = committed_keys(st, run_id) if keys is None else keys
    wanted = set(zip(keys.column("run_id").to_pylist(), keys.column("episode_id").to_pylist(), strict=True))
    return [path for path in files if episode_of(table, path) in wanted]


def dataset(
    root: str | Storage, table: str, *, keys: pa.Table | None = None, run_id: str | None = None
) -> ds.Dataset:
    """A pyarrow dataset over the committed files of one table, optionally of one run (empty, with its schema,
    if there are none)."""
    st = _storage(root)
    return ds.dataset(
        committed_files(st, table, keys, run_id), schema=TABLES[table], format="parquet", filesystem=st.fs
    )


def index_path(storage: Storage, run_id: str) -> str:
    """Where a run's episode index lives: ``runs/<run>/episodes.parquet``."""
    return storage.path("runs", run_id, "episodes.parquet")


def episode_records(
    root: str | Storage, *, run_id: str | None = None, columns: list[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """The committed episode records: those the runs' indexes hold, and the record files they do not cover.

    Returns:
        ``(indexed, files)``: the indexed rows (only of episodes whose record file is listed now) and the record
        files left to read. Together they are exactly the committed episodes.
    """
    st = _storage(root)
    by_run: dict[str, dict[str, str]] = {}
    for path in table_files(st, "episodes", run_id):
        key = episode_of("episodes", path)
        if key is not None:
            by_run.setdefault(key[0], {})[key[1]] = path
    schema = (
        TABLES["episodes"] if columns is None else pa.schema([TABLES["episodes"].field(c) for c in columns])
    )
    indexed: list[pa.Table] = []
    rest: list[str] = []
    for run, files in sorted(by_run.items()):
        path = index_path(st, run)
        table = None
        if st.exists(path):
            table = pq.read_table(
                pa.BufferReader(st.read_bytes(path)), columns=columns, schema=TABLES["episodes"]
            )
            table = table.filter(pc.is_in(table.column("episode_id"), value_set=pa.array(sorted(files))))
            indexed.append(table.cast(schema))
        covered = set(table.column("episode_id").to_pylist()) if table is not None else set()
        rest.extend(p for e, p in sorted(files.items()) if e not in covered)
    return (pa.concat_tables(indexed) if indexed else schema.empty_table()), rest


def read_episode_records(
    root: str | Storage, *, run_id: str | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Every committed episode record (optionally of one run, some columns): indexes and record files together."""
    st = _storage(root)
    indexed, files = episode_records(st, run_id=run_id, columns=columns)
    if not files:
        return indexed
    rest = ds.dataset(files, schema=TABLES["episodes"], format="parquet", filesystem=st.fs).to_table(
        columns=columns
    )
    return pa.concat_tables([indexed, rest])


def committed_keys(root: str | Storage, run_id: str | None = None) -> pa.Table:
    """``(run_id, episode_id, attempt)`` of every committed episode (optionally of one run)."""
    return read_episode_records(root, run_id=run_id, columns=["run_id", "episode_id", "attempt"])


def _composite(table: pa.Table) -> pa.Array:
    attempt = pc.cast(table.column("attempt"), pa.string())
    joined = pc.binary_join_element_wise(table.column("run_id"), table.column("episode_id"), attempt, "\x1f")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def load(
    root: str | Storage,
    tables: tuple[str, ...] = ("episodes", "steps", "turns", "memory_ops", "memory_files"),
    *,
    run_id: str | None = None,
    columns: dict[str, list[str]] | None = None,
) -> dict[str, pa.Table]:
    """The committed tables as Arrow tables: rows of episodes without a committed record are left out.

    Args:
        root: local folder or ``s3://bucket/prefix``.
        tables: which tables to read.
        run_id: only this run.
        columns: per table, the columns to read (the key columns are always included).
    """
    st = _storage(root)
    key_cols = ["run_id", "episode_id", "attempt"]

    def cols_of(name: str) -> list[str] | None:
        return list(dict.fromkeys([*key_cols, *columns[name]])) if columns and name in columns else None

    # The records, read once: the committed keys and (if asked for) the episodes table, by run and episode.
    records = read_episode_records(
        st, run_id=run_id, columns=cols_of("episodes") if "episodes" in tables else key_cols
    ).sort_by([("run_id", "ascending"), ("episode_id", "ascending")])
    keys = records.select(key_cols)
    out: dict[str, pa.Table] = {}
    for name in tables:
        if name == "episodes":
            out[name] = records
            continue
        table = dataset(st, name, keys=keys, run_id=run_id).to_table(columns=cols_of(name))
        if name != "attempts":
            # Arrow's join cannot carry list columns (memory_ops.args), so filter on a composite key instead.
            table = table.filter(pc.is_in(_composite(table), value_set=_composite(keys)))
        out[name] = table
    return out


def read_manifest(root: str | Storage, run_id: str) -> dict[str, Any] | None:
    """The run's manifest, or None if the run has none."""
    st = _storage(root)
    path = st.path("runs", run_id, "manifest.json")
    if not st.exists(path):
        return None
    return json.loads(st.read_bytes(path))
