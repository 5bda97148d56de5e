"""Ray Data over the trajectory store: one table's committed rows as a Ray Dataset, read in parallel on the cluster.

    from actors.data import ray_dataset
    steps = ray_dataset("s3://bucket/trajectories", "steps", columns=["step", "action"])

Which files and rows it shows is ``automem.trajectory``'s rule (``visible_files``), as for every other reader.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from automem.trajectory import Storage, committed_files, committed_keys
from automem.trajectory.reader import check_rows, commits_of, visible_rows
from automem.trajectory.schemas import TABLES


def ray_dataset(root: str, table: str, *, columns: list[str] | None = None, strict: bool = False) -> Any:
    """A Ray Dataset of one table's committed rows (runs in a Ray job; reads in parallel on the cluster).

    Files are narrowed to committed episodes by name. Under the commit protocol that is exact: a commit first
    removes what earlier attempts of the episode left, and a committed episode never runs again. ``strict``
    adds the row-level checks the DuckDB views make (the exact committed attempt, and every row of the run and
    episode its file's name says), for stores written by other means; it costs a map stage and a path column. The
    store's filesystem (explicit S3 endpoint, resolved credentials) is passed to Ray Data, so the read tasks need no
    environment of their own.

    Args:
        root: folder or ``s3://bucket/prefix``.
        table: ``episodes``, ``steps``, ``turns``, ``memory_ops``, ``memory_files`` or ``attempts``.
        columns: columns to read (the key columns are added).
        strict: also filter rows to the committed ``(run_id, episode_id, attempt)`` and fail on a file whose rows
            are of another episode than its name says (``StoreFileError``, naming it).
    """
    st = Storage(root)
    keys = committed_keys(st)
    files = committed_files(st, table, keys)
    cols = list(dict.fromkeys(["run_id", "episode_id", "attempt", *columns])) if columns else None
    if not files:
        return ray.data.from_arrow(TABLES[table].empty_table().select(cols or TABLES[table].names))
    ds = ray.data.read_parquet(files, filesystem=st.fs, schema=TABLES[table], include_paths=strict)
    if cols:
        ds = ds.select_columns([*cols, "path"] if strict else cols)  # pushed down into the read by Ray Data
    if not strict:
        return ds
    commits = commits_of(keys)

    def committed(batch: pa.Table) -> pa.Table:
        paths = batch["path"]
        for path in pc.unique(paths).to_pylist():
            check_rows(table, path, batch.filter(pc.equal(paths, path)))
        return batch.filter(visible_rows(table, batch, paths, commits)).drop_columns(["path"])

    return ds.map_batches(committed, batch_format="pyarrow")


__all__ = ["ray_dataset"]
