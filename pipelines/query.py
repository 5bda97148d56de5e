"""Query: SQL over the committed trajectories of a store, with DuckDB.

    automem query runs/demo "SELECT scaffold_id, count(*), avg(progression) FROM episodes GROUP BY 1"
    automem query s3://bucket/trajectories "SELECT op, count(*) FROM memory_ops GROUP BY op" --json
    automem query runs/demo "SELECT * FROM steps WHERE NOT action_valid" --csv > invalid.csv
    ray job submit --working-dir . -- automem query s3://bucket/trajectories "SELECT count(*) FROM steps"

Views: episodes, steps, turns, memory_ops, memory_files, attempts (columns: automem/trajectory/schemas.py,
or `automem query ROOT "DESCRIBE steps"`). Rows of episodes that have not committed are never visible.
dataset_rows: the rows of every complete Loop 2 dataset under ROOT/datasets/ (`automem distill dataset --out
ROOT`; one with its manifest written), with a dataset_id column; ROOT may hold datasets only:

    automem query data "SELECT dataset_id, phase, count(*) FROM dataset_rows GROUP BY ALL"

ledger: one row per adapter evaluation (`automem distill eval`; `UNNEST(metrics)` gives one row per metric).
lineage: one row per Loop 1 candidate scaffold (`automem evolve`): parent, patch, diff, gate statistics, decision:

    automem query runs "SELECT evolve, iteration, decision, rule, mean_diff, lower, p_value FROM lineage"

For s3:// roots, AWS_ENDPOINT_URL names an S3-compatible server. From Python: ``automem.query(root, sql)`` returns
an Arrow table; from Ray Data: ``actors.data.ray_dataset(root, table)``.

SQL sees the store's views and nothing else: one read-only statement (SELECT, WITH, VALUES, DESCRIBE, SHOW,
SUMMARIZE, or EXPLAIN of one), which reads the store's own files and no others (no read_csv of other files, glob,
COPY, ATTACH, INSTALL or SET). --unsafe-sql lifts this for trusted local use.

Output: an aligned table, or --csv, or --json (an array of row objects). Every DuckDB type prints; a value JSON
cannot hold as it is becomes: DECIMAL/HUGEINT a number when whole or when a double keeps its digits, else a string
of its exact digits; NaN and infinities the strings "NaN", "Infinity", "-Infinity"; dates, times and timestamps ISO
8601 strings ("infinity" for DuckDB's infinite ones); INTERVAL an ISO 8601 duration ("P1DT2H"); BLOB base64;
UUID its text; MAP an object keyed by the keys' text. CSV writes the same, with nested cells as JSON and DECIMAL
exactly.

Exit status: 0, or 2 when ROOT does not exist, holds no trajectory store, cannot be reached, or the SQL fails or is
refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pipelines._common import add_retry_argument, emit, error_text, open_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="run SQL over a trajectory store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="store root: a folder or s3://bucket/prefix")
    p.add_argument("sql", metavar="SQL", help="a DuckDB SQL query over the views")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV (list cells as JSON)")
    fmt.add_argument("--json", action="store_true", help="print a JSON array of row objects")
    p.add_argument(
        "--max-rows",
        type=int,
        default=100,
        metavar="N",
        help="rows shown as a table (default 100; CSV/JSON: all)",
    )
    p.add_argument(
        "--unsafe-sql",
        action="store_true",
        help="run any SQL, of any number of statements, with DuckDB unrestricted: it may then read and write any "
        "file this process can (read_csv, glob, COPY), attach databases, install extensions and change settings. "
        "For trusted local use only; never for SQL from someone else, nor in a job on a shared cluster",
    )
    add_retry_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from automem import render
    from automem.trajectory import TABLES, UnsafeSQLError, query, read_errors

    if not args.sql.strip():
        print('automem query: error: SQL is empty (try "SELECT count(*) FROM episodes")', file=sys.stderr)
        return 2
    if args.max_rows < 0 or args.retry_s < 0:
        print("automem query: error: --max-rows and --retry-s must be 0 or more", file=sys.stderr)
        return 2
    try:
        table = query(_open(args.root, args.retry_s), args.sql, unsafe_sql=args.unsafe_sql)
    except read_errors() as exc:
        hint = ""
        if isinstance(exc, duckdb.CatalogException):
            hint = f" (views: {', '.join(TABLES)}, dataset_rows)"
        elif isinstance(exc, duckdb.PermissionException):
            hint = "; a query reads the store's views and no other file; --unsafe-sql lifts this, for trusted use"
        elif isinstance(exc, UnsafeSQLError):
            hint = "; --unsafe-sql lifts this, for trusted local use"
        print(f"automem query: {error_text(exc)}{hint}", file=sys.stderr)
        return 2
    if args.json:
        emit(render.to_json(table) + "\n")
    elif args.csv:
        emit(render.to_csv(table))
    else:
        emit(render.to_text(table, max_rows=args.max_rows) + "\n")
    return 0


def _open(root: str, retry_s: float) -> Any:
    """The store at ``root``, or, where it holds no store, the root of the datasets it holds (the ``--out`` of
    ``automem distill dataset``); ``StoreError`` if it holds neither."""
    from automem.distill.dataset import complete_datasets
    from automem.trajectory import Storage, StorageError, StoreError

    try:
        return open_root(root, retry_s)
    except StoreError:
        st = Storage(root, retry_for_s=retry_s)
        try:
            if (st.is_s3 or os.path.isdir(st.base)) and complete_datasets(st):
                return st
        except StorageError:
            pass
        raise
