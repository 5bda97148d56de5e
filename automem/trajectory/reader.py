"""Reading the committed store: pyarrow datasets and ``load``, both of committed episodes only.

The files of a table are ``tables/<table>/<run>/<episode>.parquet`` (``-a<attempt>`` in ``attempts``). An
episode is committed once its ``episodes`` file exists; the other tables' files are written just before it, so a
listing of a folder can briefly show an episode whose record is being written (or, after a killed process, one
whose commit never finished, until ``repair``). Which files and rows every reader shows (these, the DuckDB views
of ``automem.trajectory.sql``, Ray Data's ``actors.data.ray_dataset``) is decided in one place,
``visible_files``.

The commit records are one small file per episode, so reading them costs per file (most of a query's time on a
large store). A finished rollout therefore also writes ``runs/<run>/episodes.parquet``, the run's records in one
file (``write_episode_index``): a cache outside ``tables/`` (no plain read of a table folder sees it twice) that
the readers use for the episodes whose own record file is listed, reading the others' files as usual. Records are
never rewritten once committed, so an index can be behind the files but never contradict them; it also holds the
size each record file had when indexed, and a listed file of another size (changed since, e.g. corrupted) is read
from the file instead. An index that cannot be read or contradicts itself is ignored, with a warning naming it,
and the run's record files are read instead. Indexes written before the sizes were added are used as they are.

A size tells a file cut short or replaced by one of another size, not one changed in place at the same size.

The writer names each file after its episode, but nothing stops a file being copied or renamed later, so the readers
check what they read: every row of ``tables/<table>/<run>/<episode>.parquet`` must be of that run and episode (a
file copied under another episode's name would otherwise count as that episode's). A file whose rows are not, or
that cannot be read, is a ``StoreFileError`` naming it (one line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from automem.trajectory.schemas import TABLES
from automem.trajectory.storage import TMP_PREFIX, Storage
from automem.trajectory.writer import PUBLISHED, episode_of

log = logging.getLogger(__name__)

INDEX_SIZE = "record_file_size"
"""The episode index's column with the size in bytes each record file had when it was indexed."""


class StoreFileError(ValueError):
    """A file of the store that cannot be read, or whose rows are not of the run and episode its name says."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _storage(root: str | Storage) -> Storage:
    return root if isinstance(root, Storage) else Storage(root)


def _listing(st: Storage, table: str, run_id: str | None = None) -> dict[str, int]:
    """``table_files`` with each file's size in bytes, which the listing has anyway (``Storage.list_files``, which
    drops them, plus the sizes)."""
    if table not in TABLES:
        raise KeyError(f"no table {table!r}; tables: {', '.join(TABLES)}")
    folder = st.path("tables", table) if run_id is None else st.path("tables", table, run_id)

    def go() -> dict[str, int]:
        sel = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
        return {
            i.path: i.size
            for i in st.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")
            and not i.base_name.startswith(TMP_PREFIX)
        }

    files = st.retry(f"list {folder}", go)
    # With a run, only files right in its folder (a run id is one path component; "a/b" or ".." names no run).
    return {p: files[p] for p in sorted(files) if run_id is None or p.rsplit("/", 2)[-2] == run_id}


def table_files(root: str | Storage, table: str, run_id: str | None = None) -> list[str]:
    """Every Parquet file in ``tables/<table>/`` (committed or not), as paths on ``Storage(root).fs``; with
    ``run_id``, only that run's (one listing of ``tables/<table>/<run>/``)."""
    return list(_listing(_storage(root), table, run_id))


Commits = Mapping[tuple[str, str], int]
"""The committed episodes: ``(run_id, episode_id)`` to the attempt whose record committed."""


def commits_of(keys: pa.Table) -> dict[tuple[str, str], int]:
    """``Commits`` from ``(run_id, episode_id, attempt)`` rows (``committed_keys``)."""
    runs, episodes, attempts = (keys.column(c).to_pylist() for c in ("run_id", "episode_id", "attempt"))
    return {(r, e): a for r, e, a in zip(runs, episodes, attempts, strict=True)}


def visible_files(table: str, files: Iterable[str], commits: Commits) -> dict[str, int | None]:
    """The commit-visibility rule, for every reader: which of ``files`` (of ``table``) a reader shows, each with
    the attempt whose rows it shows (None: all of its rows).

    An episode's rows in the tables published at its commit (``writer.PUBLISHED``: steps, turns, memory_ops,
    memory_files) are visible once its record is committed, and then only the rows of the attempt that committed,
    which hides anything a crashed commit of another attempt left behind. The writer names each file after its
    episode (``episode_of``), so the name picks the episode, and the attempt is a filter on the rows. Every file of
    ``episodes`` (the commit records themselves) and of ``attempts`` (a row for each finished attempt, committed or
    failed) is visible, with all its rows; ``commits`` is not consulted for them.

    Args:
        table: one of the store's tables.
        files: paths of its files (``table_files``).
        commits: the committed episodes (``commits_of(committed_keys(...))``, or the rows of the DuckDB
            ``episodes`` view).
    """
    if table not in PUBLISHED:
        return dict.fromkeys(files)
    out: dict[str, int | None] = {}
    for path in files:
        key = episode_of(table, path)
        if key is not None and key in commits:
            out[path] = commits[key]
    return out


def committed_files(
    root: str | Storage, table: str, keys: pa.Table | None = None, run_id: str | None = None
) -> list[str]:
    """The files of ``table`` that a reader shows (``visible_files``).

    Args:
        root: local folder or ``s3://bucket/prefix``.
        table: one of the store's tables.
        keys: the committed keys (``committed_keys``), when the caller already has them.
        run_id: only this run's files.
    """
    st = _storage(root)
    commits: Commits = {}
    if table in PUBLISHED:  # the only tables whose visibility depends on the commits (``visible_files``)
        commits = commits_of(committed_keys(st, run_id) if keys is None else keys)
    return list(visible_files(table, table_files(st, table, run_id), commits))


def check_rows(table: str, path: str, rows: pa.Table | pa.RecordBatch) -> None:
    """Raise ``StoreFileError`` unless every row of ``rows``, read from ``path``, is of the run and episode the
    file's name says (``run_id`` and ``episode_id`` columns; names the writer does not give are not checked)."""
    key = episode_of(table, path)
    if key is None or not rows.num_rows:
        return
    ok = pc.fill_null(pc.and_(pc.equal(rows["run_id"], key[0]), pc.equal(rows["episode_id"], key[1])), False)
    if pc.all(ok).as_py():
        return
    i = pc.index(ok, False).as_py()
    found = f"{rows['run_id'][i].as_py()}/{rows['episode_id'][i].as_py()}"
    raise StoreFileError(path, f"holds rows of episode {found}, not of {key[0]}/{key[1]} as its name says")


def unreadable_file(
    root: str | Storage, table: str, files: list[str], columns: list[str] | None = None
) -> StoreFileError | None:
    """After a read of ``files`` failed: the first file that fails when read alone, as a ``StoreFileError`` naming
    it, or None. Readers call it on their error path only: pyarrow and DuckDB name no file for some kinds of damage
    (a page's header rather than the footer, say).
    """
    st = _storage(root)
    for path in files:
        try:
            pq.read_table(path, columns=columns, schema=TABLES[table], filesystem=st.fs)
        except (pa.ArrowException, OSError) as exc:
            return StoreFileError(path, f"cannot be read: {_one_line(exc)}")
    return None


def visible_rows(
    table: str, batch: pa.Table | pa.RecordBatch, paths: pa.Array | pa.ChunkedArray, commits: Commits
) -> pa.Array | pa.ChunkedArray:
    """A mask of the rows of ``batch`` that a reader shows (``visible_files``), each row read from the file that
    ``paths`` names."""
    keep = pa.repeat(False, batch.num_rows)
    for path, attempt in visible_files(table, pc.unique(paths).to_pylist(), commits).items():
        here = pc.equal(paths, path)
        if attempt is not None:
            here = pc.and_(here, pc.equal(batch["attempt"], attempt))
        keep = pc.or_(keep, pc.fill_null(here, False))
    return keep


def _scan(
    st: Storage,
    table: str,
    files: list[str],
    columns: list[str] | None = None,
    commits: Commits | None = None,
) -> pa.Table:
    """The rows of ``files`` of ``table`` (some columns), each file's rows checked against its name as they are
    read (``check_rows``, on every batch: no second read); an unreadable file is a ``StoreFileError``. With
    ``commits``, only the rows a reader shows (``visible_rows``)."""
    schema = TABLES[table]
    cols = list(columns or schema.names)
    needed = ("run_id", "episode_id", "attempt") if commits is not None else ("run_id", "episode_id")
    keys = [c for c in needed if c not in cols]
    scanner = ds.dataset(files, schema=schema, format="parquet", filesystem=st.fs).scanner(
        columns=[*cols, *keys, "__filename"]
    )
    batches = []
    try:
        for batch in scanner.to_batches():
            names = batch.column("__filename")
            paths = pc.unique(names).to_pylist()  # one file per batch, but the scanner does not promise it
            for path in paths:
                check_rows(table, path, batch if len(paths) == 1 else batch.filter(pc.equal(names, path)))
            if commits is not None:
                batch = batch.filter(visible_rows(table, batch, names, commits))
            batches.append(batch.select(cols))
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_file(st, table, files, cols) or exc from exc
    return pa.Table.from_batches(batches, schema=pa.schema([schema.field(c) for c in cols]))


def _check_footers(st: Storage, table: str, data: ds.FileSystemDataset) -> None:
    """Check each file of ``data`` against its name from its footer's statistics (``StoreFileError`` if its rows
    are of another episode or it cannot be read). The fragments keep the footers, so a scan does not read them
    again; a file without statistics of its keys (not written by the store) has its key columns read instead."""
    fragments = list(data.get_fragments())

    def footer(fragment: ds.ParquetFileFragment) -> None:
        try:
            fragment.ensure_complete_metadata()
        except (pa.ArrowException, OSError) as exc:
            raise StoreFileError(fragment.path, f"cannot be read: {_one_line(exc)}") from exc

    if st.is_s3 and len(fragments) > 1:  # a request each: overlap them
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(footer, fragments))
    else:
        for fragment in fragments:
            footer(fragment)
    unsure = []
    for fragment in fragments:
        key = episode_of(table, fragment.path)
        if key is None:
            continue
        for group in fragment.row_groups:
            if not group.num_rows:
                continue
            stats = group.statistics or {}
            run, episode = stats.get("run_id") or {}, stats.get("episode_id") or {}
            found = [(run.get(m), episode.get(m)) for m in ("min", "max")]
            if None in found[0] or None in found[1]:
                unsure.append(fragment.path)
                break
            bad = [f"{r}/{e}" for r, e in found if (r, e) != key]
            if bad:
                msg = f"holds rows of episode {bad[0]}, not of {key[0]}/{key[1]} as its name says"
                raise StoreFileError(fragment.path, msg)
    if unsure:
        _scan(st, table, unsure, ["run_id", "episode_id"])


def dataset(
    root: str | Storage, table: str, *, keys: pa.Table | None = None, run_id: str | None = None
) -> ds.Dataset:
    """A pyarrow dataset over the committed files of one table, optionally of one run (empty, with its schema,
    if there are none).

    Each file's footer is read here, and its statistics checked against the file's name (a scan then reuses the
    footers): a file whose rows are of another episode, or that cannot be read, is a ``StoreFileError``.
    """
    st = _storage(root)
    out = ds.dataset(
        committed_files(st, table, keys, run_id), schema=TABLES[table], format="parquet", filesystem=st.fs
    )
    _check_footers(st, table, out)
    return out


def index_path(storage: Storage, run_id: str) -> str:
    """Where a run's episode index lives: ``runs/<run>/episodes.parquet``."""
    return storage.path("runs", run_id, "episodes.parquet")


def _index_problem(table: pa.Table, run: str) -> str | None:
    """Why the index rows ``table`` (of run ``run``) contradict themselves, or None."""
    if not pc.all(pc.fill_null(pc.equal(table["run_id"], run), False)).as_py():
        return f"it holds rows of another run than {run}"
    if table["episode_id"].null_count or pc.count_distinct(table["episode_id"]).as_py() != table.num_rows:
        return "it lists an episode twice or without its id"
    return None


def _indexed(
    st: Storage, run: str, listed: dict[str, tuple[str, int]], columns: list[str], *, trust_unsized: bool
) -> pa.Table | None:
    """The rows of run ``run``'s index (``columns`` and ``INDEX_SIZE``) that the listing ``listed`` (episode: record
    file and its size) vouches for: the episode's file is listed, at the size the index holds. Rows of an index
    without sizes count as vouched for when ``trust_unsized``. None when the run has no usable index."""
    path = index_path(st, run)
    if not st.exists(path):
        return None
    data = st.read_bytes(path)
    schema = pa.schema([*(TABLES["episodes"].field(c) for c in columns), pa.field(INDEX_SIZE, pa.int64())])
    try:
        index = pq.ParquetFile(pa.BufferReader(data))
        sized = INDEX_SIZE in index.schema_arrow.names
        table = index.read(columns=[*columns, INDEX_SIZE] if sized else columns)
        if not sized:  # written before the index held sizes
            table = table.append_column(INDEX_SIZE, pa.nulls(table.num_rows, pa.int64()))
        table = table.select(schema.names).cast(schema)
        problem = _index_problem(table, run)
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        problem = f"it cannot be read ({_one_line(exc)})"
    if problem:
        log.warning(
            "ignoring the episode index %s: %s; reading the run's record files instead", path, problem
        )
        return None
    episodes = sorted(listed)
    at = pc.index_in(table["episode_id"], value_set=pa.array(episodes, pa.string()))
    size = pc.take(pa.array([listed[e][1] for e in episodes], pa.int64()), at)  # null where not listed
    same = pc.equal(size, table[INDEX_SIZE])
    changed = pc.sum(pc.fill_null(pc.invert(same), False)).as_py()
    if changed:
        log.warning(
            "%s: %d record file(s) changed size since this index was written; reading them from their files",
            path,
            changed,
        )
    if trust_unsized:
        same = pc.if_else(pc.is_null(table[INDEX_SIZE]), pc.is_valid(at), same)
    return table.filter(pc.fill_null(same, False))


def _records(
    st: Storage, run_id: str | None, columns: list[str] | None, *, trust_unsized: bool = True
) -> tuple[pa.Table, list[tuple[str, int]]]:
    """``episode_records`` with ``INDEX_SIZE`` on the indexed rows and each file left to read with its size."""
    by_run: dict[str, dict[str, tuple[str, int]]] = {}
    for path, size in _listing(st, "episodes", run_id).items():
        key = episode_of("episodes", path)
        if key is not None:
            by_run.setdefault(key[0], {})[key[1]] = (path, size)
    cols = list(columns or TABLES["episodes"].names)
    read = list(dict.fromkeys(["run_id", "episode_id", *cols]))  # the checks need the keys
    indexed: list[pa.Table] = []
    rest: list[tuple[str, int]] = []
    for run, listed in sorted(by_run.items()):
        table = _indexed(st, run, listed, read, trust_unsized=trust_unsized)
        covered = set(table["episode_id"].to_pylist()) if table is not None else set()
        if table is not None:
            indexed.append(table.select([*cols, INDEX_SIZE]))
        rest.extend(file for e, file in sorted(listed.items()) if e not in covered)
    schema = pa.schema([*(TABLES["episodes"].field(c) for c in cols), pa.field(INDEX_SIZE, pa.int64())])
    return (pa.concat_tables(indexed) if indexed else schema.empty_table()), rest


def episode_records(
    root: str | Storage, *, run_id: str | None = None, columns: list[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """The committed episode records: those the runs' indexes hold, and the record files they do not cover.

    Returns:
        ``(indexed, files)``: the indexed rows (only of episodes whose record file is listed now, at the size the
        index holds) and the record files left to read. Together they are exactly the committed episodes.
    """
    indexed, rest = _records(_storage(root), run_id, columns)
    return indexed.drop_columns([INDEX_SIZE]), [path for path, _ in rest]


def read_episode_records(
    root: str | Storage,
    *,
    run_id: str | None = None,
    columns: list[str] | None = None,
    with_sizes: bool = False,
) -> pa.Table:
    """Every committed episode record (optionally of one run, some columns): indexes and record files together,
    the files' rows checked against their names.

    Args:
        with_sizes: add ``INDEX_SIZE``, each record file's size (what an index holds; ``columns`` must then
            include the keys), and read the rows of an index without sizes from their files instead.
    """
    st = _storage(root)
    indexed, rest = _records(st, run_id, columns, trust_unsized=not with_sizes)
    if not with_sizes:
        indexed = indexed.drop_columns([INDEX_SIZE])
    if not rest:
        return indexed
    rows = _scan(st, "episodes", [path for path, _ in rest], columns)
    if with_sizes:
        size = {episode_of("episodes", path): n for path, n in rest}
        keys = zip(rows["run_id"].to_pylist(), rows["episode_id"].to_pylist(), strict=True)
        rows = rows.append_column(INDEX_SIZE, pa.array([size[k] for k in keys], pa.int64()))
    return pa.concat_tables([indexed, rows])


def committed_keys(root: str | Storage, run_id: str | None = None) -> pa.Table:
    """``(run_id, episode_id, attempt)`` of every committed episode (optionally of one run)."""
    return read_episode_records(root, run_id=run_id, columns=["run_id", "episode_id", "attempt"])


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

    Raises:
        StoreFileError: a file that cannot be read, or whose rows are not of the episode its name says.
    """
    st = _storage(root)
    key_cols = ["run_id", "episode_id", "attempt"]

    def cols_of(name: str) -> list[str] | None:
        return list(dict.fromkeys([*key_cols, *columns[name]])) if columns and name in columns else None

    # The records, read once: the committed keys and (if asked for) the episodes table, by run and episode.
    records = read_episode_records(
        st, run_id=run_id, columns=cols_of("episodes") if "episodes" in tables else key_cols
    ).sort_by([("run_id", "ascending"), ("episode_id", "ascending")])
    commits = commits_of(records)
    out: dict[str, pa.Table] = {}
    for name in tables:
        if name == "episodes":
            out[name] = records
            continue
        files = list(visible_files(name, table_files(st, name, run_id), commits))
        out[name] = _scan(st, name, files, cols_of(name), commits)
    return out


def read_manifest(root: str | Storage, run_id: str) -> dict[str, Any] | None:
    """The run's manifest, or None if the run has none."""
    st = _storage(root)
    path = st.path("runs", run_id, "manifest.json")
    if not st.exists(path):
        return None
    return json.loads(st.read_bytes(path))
