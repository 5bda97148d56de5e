"""The SQL sandbox: what SQL on a store's DuckDB connection may do (``automem.trajectory.sql``).

SQL on these connections sees the store and nothing else (``lock_down``): DuckDB's external access is off, the
store's own table folders and the rows of its complete datasets are the only files it may read, and the configuration is locked so that SQL cannot turn
any of it back on. ``query`` and ``select_episodes`` also run exactly one read-only statement
(``read_only_statement``). Both are lifted by ``unsafe_sql=True``, for trusted local use only.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from automem.trajectory.storage import Storage

if TYPE_CHECKING:
    import duckdb


class UnsafeSQLError(ValueError):
    """SQL that a safe query does not run: not exactly one read-only statement."""


# What a safe query runs. DuckDB parses WITH, VALUES, FROM-first queries, PIVOT with its values listed, DESCRIBE,
# SHOW and SUMMARIZE as SELECT statements; EXPLAIN runs when what it explains is one (EXPLAIN ANALYZE executes it).
_READ_ONLY = "SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE, or EXPLAIN of one of these"


def read_only_statement(sql: str) -> duckdb.Statement:
    """The one read-only statement ``sql`` holds, parsed; ``UnsafeSQLError`` names what else it holds.

    Raises:
        UnsafeSQLError: no statement, several, or one of another kind (COPY, ATTACH, SET, CREATE, PRAGMA, CALL...).
        duckdb.ParserException: SQL that does not parse.
    """
    import duckdb

    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise UnsafeSQLError(
            f"refused {len(statements)} statements: a query runs exactly one read-only statement ({_READ_ONLY})"
        )
    (statement,) = statements
    kind = statement.type.name
    if kind == "EXPLAIN":
        inner = _explained(statement.query)
        try:
            inner_kinds = [s.type.name for s in duckdb.extract_statements(inner)] if inner else []
        except duckdb.ParserException:
            inner_kinds = []
        if inner_kinds != ["SELECT"]:
            raise UnsafeSQLError(
                f"refused an EXPLAIN of something other than one query: a query runs {_READ_ONLY}"
            )
    elif kind == "MULTI":
        raise UnsafeSQLError(
            "refused a statement that runs several (DuckDB makes a PIVOT without an IN list one: it creates a "
            "type first); list the values, as in PIVOT steps ON phase IN ('log', 'plan')"
        )
    elif kind != "SELECT":
        raise UnsafeSQLError(
            f"refused a {kind} statement: a query runs one read-only statement ({_READ_ONLY})"
        )
    return statement


def _explained(text: str) -> str | None:
    """What ``EXPLAIN [ANALYZE] [(options)] ...`` explains, or None when the text does not start that way."""
    import duckdb

    marks = duckdb.tokenize(text)
    ends = [p for p, _ in marks[1:]] + [len(text)]
    words = [
        (p, text[p:end].strip().lower())
        for (p, kind), end in zip(marks, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    if not words or words[0][1] != "explain":
        return None
    i = 2 if len(words) > 1 and words[1][1] == "analyze" else 1
    if i < len(words) and words[i][1] == "(":  # options, up to the parenthesis that closes them
        depth = 0
        while i < len(words):
            depth += (words[i][1] == "(") - (words[i][1] == ")")
            i += 1
            if depth == 0:
                break
    return text[words[i][0] :] if i < len(words) else None


def _inside(st: Storage, files: Iterable[str]) -> list[str]:
    """The real paths of those of ``files`` whose real path lies in the store's folder.

    DuckDB resolves an allowed path's symbolic links, so allowing a link would allow what it points to: a link in
    the store to a file outside it is not allowed (a view that reads it then fails, naming it).
    """
    base = os.path.realpath(st.base) + os.sep
    real = (os.path.realpath(f) for f in files)
    return sorted(f for f in real if f.startswith(base))


def lock_down(con: duckdb.DuckDBPyConnection, st: Storage, files: Iterable[str] = ()) -> None:
    """Let SQL on ``con`` read the store's own files and nothing else, for the connection's life.

    ``enable_external_access = false`` refuses every other file and URL (``read_csv``, ``read_text``, ``glob``,
    ``COPY``, ``ATTACH`` of a file, ``INSTALL``/``LOAD``); ``allowed_directories`` lets the local views read the
    store's ``tables/`` folder (DuckDB resolves symbolic links before comparing) and ``allowed_paths`` the single
    ``files`` named (the rows of complete datasets: not the rest of ``datasets/``, where unfinished builds lie);
    S3 views are registered datasets and need no path. Python variables are not scanned as tables. DuckDB always allows its temporary directory,
    by default ``./.tmp`` in the working directory, whatever is kept there, so spills go to a fresh folder that
    DuckDB creates when it needs it and removes at close. Last, ``lock_configuration`` stops SQL from SETting any
    of this back (DuckDB then refuses every SET).
    """
    con.execute(
        "SET temp_directory = ?", [os.path.join(tempfile.gettempdir(), f"automem-duckdb-{uuid.uuid4().hex}")]
    )
    con.execute("SET allowed_directories = ?", [[] if st.is_s3 else [st.path("tables") + "/"]])
    con.execute("SET allowed_paths = ?", [[] if st.is_s3 else _inside(st, files)])
    con.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


__all__ = ["UnsafeSQLError", "lock_down", "read_only_statement"]
