"""SQL over the committed trajectory store, with DuckDB.

``connect(root)`` returns a DuckDB connection with one view per table (``episodes``, ``steps``, ``turns``,
``memory_ops``, ``memory_files``, ``attempts``), and ``dataset_rows``: the rows of the root's complete Loop 2
datasets (``datasets/<id>/``, those with a manifest; ``automem.distill``) with their ``dataset_id``. Rows of episodes whose ``episodes`` record is not committed are
never visible: the ``episodes`` rows (the commit records) are read once into memory; the files of the other tables
are narrowed to committed episodes by name (the writer names them after the episode) and their rows to the
attempt that committed, which also hides what a crashed commit of another attempt left behind (the rule is
``reader.visible_files``, which every reader applies). Since a file's name
picks its episode, every row read from a file is checked against that name: a file whose rows are of another
episode (copied under its name, say) is an error naming it rather than rows counted as the wrong episode's.

Local roots are read by DuckDB's own Parquet reader (parallel, with projection and filter pushdown). ``s3://``
roots are read through a ``pyarrow.dataset`` on the store's ``S3FileSystem``, registered as a view: DuckDB's
wheel has no ``httpfs`` extension offline, and pyarrow's filesystem carries the explicit endpoint
(``AWS_ENDPOINT_URL``) that S3-compatible servers need.

SQL on these connections sees the store and nothing else (``sandbox.lock_down``): DuckDB's external access is off,
the store's own table folders and its datasets' rows are the only files it may read, and the configuration is locked so that SQL cannot
turn any of it back on. ``query`` also runs exactly one read-only statement (``sandbox.read_only_statement``). Both
are lifted by ``unsafe_sql=True``, for trusted local use only.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds

from automem.trajectory.reader import (
    Commits,
    commits_of,
    episode_records,
    table_files,
    unreadable_file,
    visible_files,
)
from automem.trajectory.sandbox import lock_down, read_only_statement
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


def _by_attempt(table: str, files: list[str], commits: Commits) -> dict[int | None, list[str]]:
    """The files a reader shows (``visible_files``), grouped by the attempt whose rows it shows (None: all)."""
    out: dict[int | None, list[str]] = {}
    for path, attempt in visible_files(table, files, commits).items():
        out.setdefault(attempt, []).append(path)
    return out


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(_sql_str(p) for p in paths) + "]"


# Every row is of the run and episode its file's name says (``tables/<table>/<run>/<episode>.parquet``), else an
# error naming the file: a file copied under another episode's name would count as that episode's. ``filename`` is
# constant within a chunk of rows, so its parts are computed once a chunk; a row costs two string comparisons.
_FILE_RUN = "parse_filename(parse_dirpath(filename))"
_FILE_EPISODE = "parse_filename(filename, true)"
_NAME_CHECK = (
    f"(run_id = {_FILE_RUN} AND episode_id = {_FILE_EPISODE} OR error(concat(filename, ': holds rows of episode ', "
    f"run_id, '/', episode_id, ', not of ', {_FILE_RUN}, '/', {_FILE_EPISODE}, ' as its name says')))"
)


def _named_dataset(st: Storage, table: str, files: list[str]) -> ds.FileSystemDataset:
    """A pyarrow dataset over ``files`` with a ``filename`` column (each fragment's path, as a partition value)."""
    fmt = ds.ParquetFileFormat()
    fragments = [
        fmt.make_fragment(path, filesystem=st.fs, partition_expression=ds.field("filename") == path)
        for path in files
    ]
    schema = TABLES[table].append(pa.field("filename", pa.string()))
    return ds.FileSystemDataset(fragments, schema=schema, format=fmt, filesystem=st.fs)


def _source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    st: Storage,
    table: str,
    files: list[str],
    *,
    checked: bool = False,
) -> str:
    """A relation over ``files`` usable in SQL: DuckDB's Parquet reader locally, a pyarrow dataset on S3.

    Args:
        checked: check every row against its file's name (``_NAME_CHECK``).
    """
    if st.is_s3:
        data = (
            _named_dataset(st, table, files)
            if checked
            else ds.dataset(files, schema=TABLES[table], format="parquet", filesystem=st.fs)
        )
        con.register(name, data)
        src = name
    else:
        src = f"read_parquet({_sql_list(files)}{', filename = true' if checked else ''})"
    return f"(SELECT * EXCLUDE (filename) FROM {src} WHERE {_NAME_CHECK})" if checked else src


def _committed_view(con: duckdb.DuckDBPyConnection, st: Storage, table: str, commits: Commits) -> None:
    """The view of a streamed table (or memory_files): the rows ``visible_files`` shows, those of the exact attempt
    that committed.

    Files are named after their episode, so the file name picks the episode and a filter on the attempt
    (an integer, checked against Parquet statistics) picks the attempt: no join on string keys over every row,
    which on a million-step store cost more than the query itself. Each row is checked against its file's name
    (``_NAME_CHECK``): a query that reads a file whose rows are of another episode fails, naming it.
    """
    import duckdb

    groups = _by_attempt(table, table_files(st, table), commits)
    if not groups:
        con.register(f"_empty_{table}", TABLES[table].empty_table())
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
        return
    parts = []
    for a, files in sorted(groups.items(), key=lambda group: -1 if group[0] is None else group[0]):
        src = _source(con, f"_raw_{table}_a{a}", st, table, files, checked=True)
        parts.append(f"SELECT * FROM {src}" + ("" if a is None else f" WHERE attempt = {int(a)}"))
    try:
        con.execute(f"CREATE VIEW {table} AS " + " UNION ALL ".join(parts))
    except duckdb.Error as exc:
        # Binding reads a file's footer, and DuckDB's message then quotes the whole SQL: name the file instead.
        listed = [path for _, files in sorted(groups.items()) for path in files]
        raise unreadable_file(st, table, listed) or exc from exc


def _dataset_rows_view(con: duckdb.DuckDBPyConnection, st: Storage, datasets: dict[str, str]) -> None:
    """The view ``dataset_rows``: every complete dataset's rows (``complete_datasets``), ``dataset_id`` first.

    Datasets differ in their ``score_<strategy>`` columns, so they are united by name (a column a dataset lacks
    is NULL in its rows). A rows file that cannot be read makes this view fail, naming it, when it is queried;
    the other views are not affected.
    """
    import duckdb

    from automem.distill.dataset import DATASET_SCHEMA

    parts = []
    try:
        for i, (did, path) in enumerate(datasets.items()):
            if st.is_s3:
                con.register(f"_raw_dataset_{i}", ds.dataset(path, format="parquet", filesystem=st.fs))
                src = f"_raw_dataset_{i}"
            else:
                src = f"read_parquet({_sql_list([path])})"
            parts.append(f"SELECT {_sql_str(did)} AS dataset_id, * FROM {src}")
        if not parts:
            empty = pa.schema([pa.field("dataset_id", pa.string()), *DATASET_SCHEMA]).empty_table()
            con.register("_empty_dataset_rows", empty)
            parts.append("SELECT * FROM _empty_dataset_rows")
        con.execute("CREATE VIEW dataset_rows AS " + " UNION ALL BY NAME ".join(parts))
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        problem = _unreadable_dataset(st, datasets) or f"{st.uri}: the datasets: {' '.join(str(exc).split())}"
        # A filter, not a column, so that every query of the view fails, count(*) included.
        con.execute(
            "CREATE VIEW dataset_rows AS SELECT NULL::VARCHAR AS dataset_id FROM range(1) "
            f"WHERE error({_sql_str(problem)}) IS NULL"
        )


def _unreadable_dataset(st: Storage, datasets: dict[str, str]) -> str | None:
    """The first dataset whose rows file has no readable footer, as a one-line problem, or None."""
    import pyarrow.parquet as pq

    for did, path in datasets.items():
        try:
            pq.read_schema(path, filesystem=st.fs)
        except (pa.ArrowException, OSError) as exc:
            return f"dataset {did}: {path} cannot be read: {' '.join(str(exc).split())}"
    return None


def connect(
    root: str | Storage,
    *,
    episodes: str | None = None,
    threads: int | None = None,
    unsafe_sql: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose views show the committed rows of the store at ``root``.

    Args:
        root: local folder or ``s3://bucket/prefix`` (the endpoint comes from ``AWS_ENDPOINT_URL``).
        episodes: restrict every view to some episodes (``select_episodes``): ids, or a query.
        threads: DuckDB worker threads (default: DuckDB's, one per core).
        unsafe_sql: leave DuckDB unrestricted: SQL on the connection may then read and write any file the process
            can, attach databases, install extensions and change settings. For trusted local use only.

    Returns:
        An in-memory DuckDB connection with views ``episodes``, ``steps``, ``turns``, ``memory_ops``,
        ``memory_files`` and ``attempts`` (``episodes`` narrows them), and ``dataset_rows`` (the rows of every
        complete dataset under ``datasets/``, with a ``dataset_id`` column) ``ledger`` (adapter evaluations,
        ``automem.distill.ledger``), ``lineage`` (Loop 1's candidates, ``automem.evolve.lineage``) and ``branches`` (one row
        per branch episode: its parent and what changed, from the runs' manifests, ``automem.branch``). It reads the files listed now; files
        committed later need a new one. Unless ``unsafe_sql``, its SQL reads the store's files and no others, and
        cannot change settings (``sandbox.lock_down``).

    Raises:
        FileNotFoundError: a local root that does not exist (a typo would otherwise read as an empty store).
    """
    import duckdb

    st = _storage(root)
    if not st.is_s3 and not os.path.isdir(st.base):
        raise FileNotFoundError(f"no trajectory store at {st.uri}: the folder does not exist")
    from automem.distill.dataset import complete_datasets
    from automem.distill.ledger import ledger_files
    from automem.evolve.lineage import lineage_files

    datasets = complete_datasets(st)
    ledger = ledger_files(st)
    lineage = lineage_files(st)
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if not unsafe_sql:
        # Before any SQL of the user's, the --episodes query included.
        lock_down(con, st, [*datasets.values(), *ledger, *lineage])
    # The commit records: one small row per episode, but one file per episode, so on large stores the cost is
    # per file. They are read once, into memory (a few hundred bytes an episode), from the runs' episode indexes
    # where a finished rollout wrote one and from the record files otherwise: they pick the other tables' files
    # and attempts, and a query that joins them does not pay the per-file cost again.
    indexed, files = episode_records(st)
    con.register("_indexed_episodes", indexed)
    if files:
        src = _source(con, "_raw_episodes", st, "episodes", files, checked=True)
        try:
            con.execute(
                f"CREATE TABLE _episodes AS SELECT * FROM _indexed_episodes UNION ALL BY NAME SELECT * FROM {src}"
            )
        except duckdb.Error as exc:  # DuckDB names no file for some kinds of damage: find it
            raise unreadable_file(st, "episodes", files) or exc from exc
    else:
        con.execute("CREATE TABLE _episodes AS SELECT * FROM _indexed_episodes")
    con.unregister("_indexed_episodes")
    con.execute("CREATE VIEW episodes AS SELECT * FROM _episodes")
    if episodes:
        con.register("_selected", select_episodes(con, episodes))
        con.execute(
            f"CREATE OR REPLACE VIEW episodes AS SELECT * FROM _episodes SEMI JOIN _selected USING ({_KEYS})"
        )
    commits = commits_of(con.sql(f"SELECT {_KEYS} FROM episodes").to_arrow_table())
    attempt_files: list[str] = []
    for table in TABLES:
        if table == "attempts":
            files = list(visible_files(table, table_files(st, table), commits))  # all of them
            attempt_files = files
            if not files:
                con.register("_raw_attempts", TABLES[table].empty_table())
            src = _source(con, "_raw_attempts", st, table, files) if files else "_raw_attempts"
            con.execute(f"CREATE VIEW attempts AS SELECT * FROM {src}")
        elif table != "episodes":
            _committed_view(con, st, table, commits)
    _dataset_rows_view(con, st, datasets)
    from automem.distill.ledger import LEDGER_SCHEMA
    from automem.evolve.lineage import LINEAGE_SCHEMA

    _row_files_view(con, st, "ledger", LEDGER_SCHEMA, ledger)
    _row_files_view(con, st, "lineage", LINEAGE_SCHEMA, lineage)
    from automem.branch.jobs import branches_table
    from automem.branch.plan import BRANCH_EPISODE_ID

    # The runs with an episode (committed, or an attempt of one) of a branch's id shape: only their manifests are
    # read, and the keys come from what this connection already listed.
    keys = con.execute("SELECT DISTINCT run_id, episode_id FROM _episodes").fetchall()
    keys += [k for k in (episode_of("attempts", f) for f in attempt_files) if k is not None]
    con.register("_branches", branches_table(st, sorted({r for r, e in keys if BRANCH_EPISODE_ID.match(e)})))
    con.execute("CREATE VIEW branches AS SELECT * FROM _branches")
    return con


def _row_files_view(
    con: duckdb.DuckDBPyConnection, st: Storage, name: str, schema: pa.Schema, files: list[str]
) -> None:
    """A view over one-row Parquet files (``ledger``: adapter evaluations, ``automem.distill.ledger``;
    ``lineage``: Loop 1 candidates, ``automem.evolve.lineage``), empty without any."""
    if not files:
        con.register(f"_empty_{name}", schema.empty_table())
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _empty_{name}")
    elif st.is_s3:
        con.register(f"_raw_{name}", ds.dataset(files, format="parquet", filesystem=st.fs, schema=schema))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _raw_{name}")
    else:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_sql_list(files)})")


def select_episodes(con: duckdb.DuckDBPyConnection, spec: str) -> pa.Table:
    """The committed episodes a selection names, as ``(run_id, episode_id, attempt)`` rows.

    Args:
        con: a connection from ``connect``.
        spec: either a SQL query (starting with SELECT or WITH) whose result has ``episode_id`` and optionally
            ``run_id`` columns, or comma-separated ids, each ``episode`` or ``run/episode``.

    Raises:
        ValueError: the query lacks an ``episode_id`` column, or an id matches no committed episode.
        UnsafeSQLError: the query is not one read-only statement (``sandbox.read_only_statement``).
    """
    if re.match(r"\s*(select|with)\b", spec, flags=re.IGNORECASE):
        rel = con.sql(read_only_statement(spec))
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


def query(root: str | Storage, sql: str, *, unsafe_sql: bool = False) -> pa.Table:
    """Run one read-only SQL statement over the committed store and return its rows as an Arrow table.

    Example:
        ``automem.query("runs/demo", "SELECT scaffold_id, avg(progression) FROM episodes GROUP BY 1")``

    Args:
        root: local folder or ``s3://bucket/prefix``.
        sql: one DuckDB query (SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN) over the views
            ``episodes``, ``steps``, ``turns``, ``memory_ops``, ``memory_files``, ``attempts`` and
            ``dataset_rows``. It reads the store's files and no others.
        unsafe_sql: run any SQL, of any number of statements, with DuckDB unrestricted (other files, COPY, ATTACH,
            INSTALL, SET). For trusted local use only; never for SQL from someone else.

    Raises:
        UnsafeSQLError: (unless ``unsafe_sql``) the SQL is not exactly one read-only statement.
        duckdb.PermissionException: (unless ``unsafe_sql``) the SQL reached for a file outside the store.
    """
    statement = sql if unsafe_sql else read_only_statement(sql)
    con = connect(root, unsafe_sql=unsafe_sql)
    try:
        rel = con.sql(statement)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    finally:
        con.close()


__all__ = ["PHASE_ORDER_SQL", "connect", "query", "select_episodes"]
