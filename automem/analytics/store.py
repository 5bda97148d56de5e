"""SQL over the committed trajectory store, with DuckDB.

``connect(root)`` returns a DuckDB connection with one view per table (``episodes``, ``steps``, ``turns``,
``memory_ops``, ``memory_files``, ``attempts``). Rows of episodes whose ``episodes`` record is not committed are
never visible: the ``episodes`` rows (the commit records) are read once into memory; the files of the other tables
are narrowed to committed episodes by name (the writer names them after the episode) and their rows to the
attempt that committed, which also hides what a crashed commit of another attempt left behind.

Local roots are read by DuckDB's own Parquet reader (parallel, with projection and filter pushdown). ``s3://``
roots are read through a ``pyarrow.dataset`` on the store's ``S3FileSystem``, registered as a view: DuckDB's
wheel has no ``httpfs`` extension offline, and pyarrow's filesystem carries the explicit endpoint
(``AWS_ENDPOINT_URL``) that S3-compatible servers need.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds

from automem.trajectory.reader import committed_files, episode_records, table_files
from automem.trajectory.schemas import TABLES
from automem.trajectory.storage import Storage
from automem.trajectory.writer import episode_of

if TYPE_CHECKING:
    import duckdb

_KEYS = "run_id, episode_id, attempt"
# Execution order of a step's phases: the scaffold's initial files, then LOG turns, then PLAN turns.
PHASE_ORDER_SQL = "CASE phase WHEN 'init' THEN 0 WHEN 'log' THEN 1 WHEN 'plan' THEN 2 ELSE 3 END"


def _storage(root: str | Storage) -> Storage:
    return root if isinstance(root, Storage) else Storage(root)


def _by_attempt(table: str, files: list[str], committed: dict[tuple[str, str], int]) -> dict[int, list[str]]:
    """Files named after a committed ``(run, episode)``, grouped by the attempt that committed."""
    out: dict[int, list[str]] = {}
    for path in files:
        key = episode_of(table, path)
        if key in committed:
            out.setdefault(committed[key], []).append(path)
    return out


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _source(con: duckdb.DuckDBPyConnection, name: str, st: Storage, table: str, files: list[str]) -> str:
    """A relation over ``files`` usable in SQL: DuckDB's Parquet reader locally, a pyarrow dataset on S3."""
    if st.is_s3:
        con.register(name, ds.dataset(files, schema=TABLES[table], format="parquet", filesystem=st.fs))
        return name
    return f"read_parquet({_sql_list(files)})"


def _committed_view(
    con: duckdb.DuckDBPyConnection, st: Storage, table: str, committed: dict[tuple[str, str], int]
) -> None:
    """The view of a streamed table (or memory_files): rows of the exact attempt that committed.

    Files are named after their episode, so the file name picks the episode and a filter on the attempt
    (an integer, checked against Parquet statistics) picks the attempt: no join on string keys over every row,
    which on a million-step store cost more than the query itself.
    """
    groups = _by_attempt(table, table_files(st, table), committed)
    if not groups:
        con.register(f"_empty_{table}", TABLES[table].empty_table())
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
        return
    parts = [
        f"SELECT * FROM {_source(con, f'_raw_{table}_a{a}', st, table, files)} WHERE attempt = {int(a)}"
        for a, files in sorted(groups.items())
    ]
    con.execute(f"CREATE VIEW {table} AS " + " UNION ALL ".join(parts))


def connect(
    root: str | Storage, *, episodes: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose views show the committed rows of the store at ``root``.

    Args:
        root: local folder or ``s3://bucket/prefix`` (the endpoint comes from ``AWS_ENDPOINT_URL``).
        episodes: restrict every view to some episodes (``select_episodes``): ids, or a query.
        threads: DuckDB worker threads (default: DuckDB's, one per core).

    Returns:
        An in-memory DuckDB connection with views ``episodes``, ``steps``, ``turns``, ``memory_ops``,
        ``memory_files`` and ``attempts``. It reads the files listed now; files committed later need a new one.

    Raises:
        FileNotFoundError: a local root that does not exist (a typo would otherwise read as an empty store).
    """
    import duckdb

    st = _storage(root)
    if not st.is_s3 and not os.path.isdir(st.base):
        raise FileNotFoundError(f"no trajectory store at {st.uri}: the folder does not exist")
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # The commit records: one small row per episode, but one file per episode, so on large stores the cost is
    # per file. They are read once, into memory (a few hundred bytes an episode), from the runs' episode indexes
    # where a finished rollout wrote one and from the record files otherwise: they pick the other tables' files
    # and attempts, and a query that joins them does not pay the per-file cost again.
    indexed, files = episode_records(st)
    con.register("_indexed_episodes", indexed)
    if files:
        src = _source(con, "_raw_episodes", st, "episodes", files)
        con.execute(
            f"CREATE TABLE _episodes AS SELECT * FROM _indexed_episodes UNION ALL BY NAME SELECT * FROM {src}"
        )
    else:
        con.execute("CREATE TABLE _episodes AS SELECT * FROM _indexed_episodes")
    con.unregister("_indexed_episodes")
    con.execute("CREATE VIEW episodes AS SELECT * FROM _episodes")
    if episodes:
        con.register("_selected", select_episodes(con, episodes))
        con.execute(
            f"CREATE OR REPLACE VIEW episodes AS SELECT * FROM _episodes SEMI JOIN _selected USING ({_KEYS})"
        )
    committed = {
        (r, e): a for r, e, a in con.sql("SELECT run_id, episode_id, attempt FROM episodes").fetchall()
    }
    for table in TABLES:
        if table == "attempts":
            files = table_files(st, table)
            if not files:
                con.register("_raw_attempts", TABLES[table].empty_table())
            src = _source(con, "_raw_attempts", st, table, files) if files else "_raw_attempts"
            con.execute(f"CREATE VIEW attempts AS SELECT * FROM {src}")
        elif table != "episodes":
            _committed_view(con, st, table, committed)
    return con


def select_episodes(con: duckdb.DuckDBPyConnection, spec: str) -> pa.Table:
    """The committed episodes a selection names, as ``(run_id, episode_id, attempt)`` rows.

    Args:
        con: a connection from ``connect``.
        spec: either a SQL query (starting with SELECT or WITH) whose result has ``episode_id`` and optionally
            ``run_id`` columns, or comma-separated ids, each ``episode`` or ``run/episode``.

    Raises:
        ValueError: the query lacks an ``episode_id`` column, or an id matches no committed episode.
    """
    if re.match(r"\s*(select|with)\b", spec, flags=re.IGNORECASE):
        rel = con.sql(spec)
        if "episode_id" not in rel.columns:
            raise ValueError(f"--episodes query must return an episode_id column; it returned {rel.columns}")
        on = "e.episode_id = s.episode_id" + (" AND e.run_id = s.run_id" if "run_id" in rel.columns else "")
        con.register("_spec", rel.to_arrow_table())
        sql = f"SELECT DISTINCT e.run_id, e.episode_id, e.attempt FROM episodes e JOIN _spec s ON {on}"
        out = con.sql(sql).to_arrow_table()
        con.unregister("_spec")
        return out
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    keys = con.sql("SELECT run_id, episode_id, attempt FROM episodes").to_arrow_table().to_pylist()
    rows = []
    for w in wanted:
        run, _, ep = w.rpartition("/")
        hit = [k for k in keys if k["episode_id"] == ep and (not run or k["run_id"] == run)]
        if not hit:
            raise ValueError(f"no committed episode {w!r}")
        rows.extend(hit)
    schema = pa.schema([TABLES["episodes"].field(k) for k in ("run_id", "episode_id", "attempt")])
    return pa.Table.from_pylist(rows, schema=schema)


def query(root: str | Storage, sql: str) -> pa.Table:
    """Run one SQL statement over the committed store and return its rows as an Arrow table.

    Example:
        ``automem.query("runs/demo", "SELECT scaffold_id, avg(progression) FROM episodes GROUP BY 1")``

    Args:
        root: local folder or ``s3://bucket/prefix``.
        sql: a DuckDB SQL query over the views ``episodes``, ``steps``, ``turns``, ``memory_ops``,
            ``memory_files`` and ``attempts``.
    """
    con = connect(root)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    finally:
        con.close()


__all__ = ["PHASE_ORDER_SQL", "committed_files", "connect", "query", "select_episodes"]
