"""Opening a store for reading, with a clear error when there is none, and listing its runs.

A DuckDB view over a folder that does not exist is simply empty, so a mistyped root would give "0 rows" or "no
committed episodes" and exit 0. ``open_store`` checks first: a local root must be an existing folder, and any root
must hold a trajectory store, i.e. at least one finished (committed or failed) episode, found in the listing of the
``episodes`` and ``attempts`` tables (``table_files``: a listing, no file is opened). The readers (``load``,
``dataset``, ``connect``, ``query``, ``diagnose``, the report) take a ``Storage`` it returned as checked. An S3
root that cannot be reached fails after ``retry_for_s`` seconds with a one-line ``StoreError``.
"""

from __future__ import annotations

import os

from automem.trajectory.reader import table_files
from automem.trajectory.storage import Storage, StorageError
from automem.trajectory.writer import episode_of

READ_RETRY_S = 20.0
"""How long readers keep retrying an unreachable store by default (the writers' default is minutes)."""


class StoreError(ValueError):
    """There is no readable trajectory store at a root."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def list_runs(root: str | Storage) -> list[str]:
    """The ids of the runs with at least one finished (committed or failed) episode, sorted.

    From the listing of the ``episodes`` and ``attempts`` tables: no file is opened.
    """
    st = root if isinstance(root, Storage) else Storage(root)
    keys = (episode_of(table, path) for table in ("episodes", "attempts") for path in table_files(st, table))
    return sorted({key[0] for key in keys if key is not None})


def open_store(root: str | Storage, *, retry_for_s: float = READ_RETRY_S) -> Storage:
    """The ``Storage`` of an existing trajectory store, for the readers.

    Args:
        root: local folder, ``file://...``, ``s3://bucket/prefix`` (endpoint from ``AWS_ENDPOINT_URL``), or a
            ``Storage`` (used as it is).
        retry_for_s: how long to retry an unreachable store before giving up (not applied to a ``Storage``).

    Raises:
        StoreError: the folder does not exist or is not a folder, the root holds no finished episode, or the
            store could not be reached.
    """
    st = root if isinstance(root, Storage) else Storage(root, retry_for_s=retry_for_s)
    if not st.is_s3 and not os.path.isdir(st.base):
        what = "is not a folder" if os.path.exists(st.base) else "does not exist"
        raise StoreError(
            f"{st.uri}: {what} (ROOT is a store folder, e.g. `automem rollout --out`, or s3://...)"
        )
    try:
        found = any(table_files(st, table) for table in ("episodes", "attempts"))
    except StorageError as exc:
        cause = exc.__cause__ or exc
        raise StoreError(
            f"cannot read {st.uri} (retried for {st.retry_for_s:g} s): {_one_line(cause)}"
        ) from None
    if not found:
        raise StoreError(
            f"{st.uri}: no trajectory store here (no committed or failed episode yet); "
            "ROOT is the folder or s3:// prefix given to `automem rollout --out`"
        )
    return st


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a store raises for a missing or unreachable store, bad SQL or a bad selection, or unreadable
    files (``StoreError``, ``StoreFileError`` and ``UnsafeSQLError`` are ``ValueError``s): the errors a reading
    command prints as one line, where anything else is a bug."""
    import duckdb
    import pyarrow as pa

    return (duckdb.Error, StorageError, ValueError, KeyError, OSError, pa.ArrowException)


__all__ = ["READ_RETRY_S", "StoreError", "list_runs", "open_store", "read_errors"]
