# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_query_safety.py
"""`automem query` runs user SQL: it sees the store's views and nothing else unless `--unsafe-sql` says so.

Each hostile query here read, listed or wrote files (or ran several statements) before the lock-down; now each is
refused in one line with exit status 2, and nothing is read or written. The views, DESCRIBE, SUMMARIZE and EXPLAIN
still work, and so do `diagnose` and `report`, whose `--episodes` query is held to the same rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from automem.trajectory import UnsafeSQLError, connect, query
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode

SECRET = "s3cr3t-value-0451"


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """The command line in this process (as a user types it, without the ~2 s start of a new interpreter)."""

    def run(*args: str) -> Result:
        rc = main(list(args))
        out = capsys.readouterr()
        return Result(rc, out.out, out.err)

    return run


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    for i in range(2):
        write_episode(
            root, "run1", f"ep-{i}", [Step(f"obs {t}", log=["APPEND notes.md x"]) for t in range(3)]
        )
    return str(root)


@pytest.fixture
def outside(tmp_path):
    """Files beside the store that no query may read: a CSV, a Parquet file and a folder to list."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.csv").write_text(f"key\n{SECRET}\n")
    pq.write_table(pa.table({"key": [SECRET]}), d / "secret.parquet")
    return d


def refused(res, *words):
    """Exit 2, one line naming what was refused, no traceback, and nothing secret printed."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert all(w in res.stderr for w in words), res.stderr
    assert SECRET not in res.stdout + res.stderr


def test_files_outside_the_store_cannot_be_read_or_listed(cli, store, outside, tmp_path, monkeypatch):
    # (code each case ran before the fix: the rows, the environment, the listing)
    cases = [
        f"SELECT * FROM read_csv('{outside}/secret.csv')",
        f"SELECT * FROM '{outside}/secret.csv'",
        f"SELECT * FROM read_parquet('{outside}/secret.parquet')",
        f"SELECT * FROM read_blob('{outside}/secret.csv')",
        "SELECT content FROM read_text('/proc/self/environ')",
        f"SELECT file FROM glob('{outside}/*')",
        f"SELECT * FROM read_text('{store}/../outside/secret.csv')",
        f"SELECT * FROM sniff_csv('{outside}/secret.csv')",
    ]
    for sql in cases:
        monkeypatch.setenv("AUTOMEM_TEST_SECRET", SECRET)
        res = cli("query", store, sql)
        refused(res, "Cannot access file", "--unsafe-sql")
    # DuckDB always allows its temporary directory; it is no longer ./.tmp, whatever the working directory keeps.
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "notes.txt").write_text(SECRET)
    refused(cli("query", store, "SELECT * FROM read_text('.tmp/notes.txt')"), "Cannot access file")


def test_writes_settings_and_several_statements_are_refused(cli, store, outside, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = {
        f"COPY (SELECT 1) TO '{tmp_path}/x.csv'": "COPY",
        f"ATTACH '{tmp_path}/x.db' AS x; CREATE TABLE x.t AS SELECT 1": "2 statements",
        f"ATTACH '{tmp_path}/x.db' AS x": "ATTACH",
        "SELECT 1; SELECT 2": "2 statements",
        "SET enable_external_access = true": "SET",
        "RESET lock_configuration": "SET",
        "INSTALL httpfs": "LOAD",
        "CREATE TABLE t AS SELECT 1": "CREATE",
        "PRAGMA show_tables": "PRAGMA",
        "CALL pragma_version()": "CALL",
        f"EXPORT DATABASE '{tmp_path}/export'": "EXPORT",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp_path}/y.csv'": "EXPLAIN",
        "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1": "EXPLAIN",
        "PIVOT steps ON phase": "PIVOT",
    }
    for sql, word in cases.items():
        refused(cli("query", store, sql), "refused", word)
    # A SELECT that wraps another statement is a parse error, not a way round.
    res = cli("query", store, f"SELECT * FROM query('COPY (SELECT 1) TO ''{tmp_path}/z.csv''')")
    assert res.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "store"]


def test_views_and_read_only_introspection_still_work(cli, store):
    res = cli("query", store, "SELECT count(*) AS n FROM steps", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == [{"n": 6}]
    for sql in [
        "DESCRIBE steps",
        "SHOW TABLES",
        "SUMMARIZE episodes",
        "EXPLAIN SELECT count(*) FROM steps",
        "/* why */ EXPLAIN ANALYZE SELECT count(*) FROM turns",
        "EXPLAIN (FORMAT json) SELECT 1",
        "WITH e AS (SELECT * FROM episodes) SELECT count(*) FROM e;",
        "FROM memory_ops LIMIT 1",
        "VALUES (1, 'a')",
        "PIVOT (SELECT phase FROM turns) ON phase IN ('log', 'plan') USING count(*)",
    ]:
        res = cli("query", store, sql)
        assert res.returncode == 0, (sql, res.stderr)
    assert query(store, "SELECT count(*) AS n FROM turns").column("n").to_pylist() == [12]


def test_library_refuses_by_default_and_the_lock_holds(store, outside):
    with pytest.raises(UnsafeSQLError, match="COPY"):
        query(store, f"COPY (SELECT 1) TO '{outside}/x.csv'")
    with pytest.raises(duckdb.PermissionException):
        query(store, f"SELECT * FROM read_csv('{outside}/secret.csv')")
    con = connect(store)
    try:
        settings = dict(con.sql("SELECT name, value FROM duckdb_settings()").fetchall())
        assert settings["enable_external_access"] == "false" and settings["lock_configuration"] == "true"
        assert settings["python_enable_replacements"] == "false"
        for sql in ("SET enable_external_access = true", "SET allowed_directories = ['/']", "RESET threads"):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(sql)
        secret_table = pa.table({"key": [SECRET]})  # a Python variable is not a table to the SQL
        with pytest.raises(duckdb.CatalogException):
            con.sql("SELECT * FROM secret_table")
        assert secret_table.num_rows == 1
    finally:
        con.close()


def test_unsafe_sql_lifts_the_lock_for_trusted_use(cli, store, outside, tmp_path):
    res = cli("query", store, f"SELECT * FROM read_csv('{outside}/secret.csv')", "--unsafe-sql", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == [{"key": SECRET}]
    sql = f"COPY (SELECT count(*) AS n FROM steps) TO '{tmp_path}/n.csv'; SELECT 7 AS x"
    res = cli("query", store, sql, "--unsafe-sql", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == [{"x": 7}]
    assert (tmp_path / "n.csv").read_text() == "n\n6\n"
    assert query(store, f"SELECT key FROM '{outside}/secret.csv'", unsafe_sql=True).to_pylist() == [
        {"key": SECRET}
    ]


def test_diagnose_and_report_episode_queries_are_held_to_the_same_rule(cli, store, outside, tmp_path):
    res = cli(
        "diagnose", store, "--episodes", f"SELECT key AS episode_id FROM read_csv('{outside}/secret.csv')"
    )
    refused(res, "Cannot access file")
    res = cli(
        "diagnose", store, "--episodes", f"SELECT 'ep-0' AS episode_id; COPY (SELECT 1) TO '{tmp_path}/x'"
    )
    refused(res, "2 statements")
    res = cli(
        "diagnose", store, "--episodes", "SELECT episode_id FROM episodes WHERE episode_id = 'ep-1'", "--json"
    )
    assert res.returncode == 0 and json.loads(res.stdout)[0]["episodes"] == 1
    out = tmp_path / "r.html"
    res = cli("report", store, "--out", str(out), "--episodes", "SELECT episode_id FROM episodes")
    assert res.returncode == 0 and out.stat().st_size > 10_000, res.stderr
    assert not (tmp_path / "x").exists()


def test_the_installed_command_refuses_in_one_line(store, outside, tmp_path):
    """The issue's commands, in a real process: exit 2, one line on stderr, nothing written."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for sql in (f"select * from read_csv('{outside}/secret.csv')", "COPY (SELECT 1) TO 'x.csv'"):
        res = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "query", store, sql],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        refused(res, "automem query: ", "--unsafe-sql")
    assert not (tmp_path / "x.csv").exists()
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "query", "--help"], capture_output=True, text=True, env=env
    )
    assert "--unsafe-sql" in res.stdout and "trusted local use" in res.stdout
