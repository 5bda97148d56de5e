# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_store_corruption.py
"""Damaged stores (issue 11, item 6): a corrupt or inconsistent episode index is ignored with a warning naming it and
the record files are read instead; a record file that changed since it was indexed is read from the file; a file
whose rows are not of the episode its name says, or that cannot be read, is a one-line error naming it, in the
library readers and in `automem query`, `diagnose` and `report` (exit status 2)."""

from __future__ import annotations

import json
import logging
import shutil

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import automem
from automem.trajectory import Storage, committed_keys, connect, dataset, load
from automem.trajectory.reader import (
    INDEX_SIZE,
    StoreFileError,
    episode_records,
    index_path,
    read_episode_records,
)
from automem.trajectory.runs import write_episode_index
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode

EPISODES = "SELECT run_id, episode_id, steps, scaffold_id FROM episodes ORDER BY episode_id"
STEPS = "SELECT episode_id, count(*) AS n FROM steps GROUP BY 1 ORDER BY 1"


def steps(n):
    return [
        Step(f"obs {t}", log=[f"APPEND notes.md fact {t}"], plan=["SEARCH fact"], state_key=str(t))
        for t in range(n)
    ]


@pytest.fixture
def root(tmp_path):
    """Two committed episodes of run1: ep-a with 10 steps, ep-b with 15."""
    root = tmp_path / "store"
    write_episode(root, "run1", "ep-a", steps(10), seed=1)
    write_episode(root, "run1", "ep-b", steps(15), seed=2)
    return root


def record(root, episode, run="run1"):
    return root / "tables" / "episodes" / run / f"{episode}.parquet"


def steps_file(root, episode, run="run1"):
    return root / "tables" / "steps" / run / f"{episode}.parquet"


def expected_episodes(run="run1"):
    return [
        {"run_id": run, "episode_id": "ep-a", "steps": 10, "scaffold_id": "s0"},
        {"run_id": run, "episode_id": "ep-b", "steps": 15, "scaffold_id": "s0"},
    ]


def one_line_error(capsys, command, path):
    """What the command printed to stderr: one line, no traceback, naming ``path``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"automem {command}: ") and str(path) in err, err
    return err


# -- the episode index: a cache that a damaged copy must not break or mislead -------------------------------------


def _damage_index(root, kind):
    st = Storage(str(root))
    path = index_path(st, "run1")
    records = read_episode_records(st, run_id="run1")
    if kind == "garbage":
        st.write_bytes(path, b"not parquet at all")
    elif kind == "truncated":
        data = st.read_bytes(path)
        st.write_bytes(path, data[: len(data) // 2])
    elif kind == "another_table":  # a readable Parquet file of the wrong columns
        st.write_table(path, pq.read_table(str(steps_file(root, "ep-a"))))
    elif kind == "episode_twice":
        st.write_table(path, pa.concat_tables([records, records]))
    elif kind == "another_run":  # the run ids inside say run2
        st.write_table(path, records.set_column(0, "run_id", pa.array(["run2"] * records.num_rows)))
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "another_table", "episode_twice", "another_run"])
def test_a_corrupt_or_inconsistent_index_is_ignored_with_a_warning_naming_it(root, caplog, kind):
    write_episode_index(Storage(str(root)), "run1")
    path = _damage_index(root, kind)
    with caplog.at_level(logging.WARNING, logger="automem.trajectory.reader"):
        assert automem.query(str(root), EPISODES).to_pylist() == expected_episodes()
        assert automem.query(str(root), STEPS).to_pylist() == [
            {"episode_id": "ep-a", "n": 10},
            {"episode_id": "ep-b", "n": 15},
        ]
        tables = load(str(root))
        assert tables["episodes"].select(["episode_id", "steps"]).to_pylist() == [
            {"episode_id": "ep-a", "steps": 10},
            {"episode_id": "ep-b", "steps": 15},
        ]
        assert tables["steps"].num_rows == 25
        indexed, files = episode_records(str(root))
        assert indexed.num_rows == 0 and len(files) == 2  # every record read from its own file
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all(path in w and "reading the run's record files instead" in w for w in warnings)


def test_query_diagnose_and_report_fall_back_from_a_corrupt_index(root, tmp_path, capsys):
    write_episode_index(Storage(str(root)), "run1")
    _damage_index(root, "garbage")
    assert main(["query", str(root), "SELECT episode_id, steps FROM episodes ORDER BY 1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"episode_id": "ep-a", "steps": 10},
        {"episode_id": "ep-b", "steps": 15},
    ]
    assert main(["diagnose", str(root), "--per-episode", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["episode_id"]: r["steps"] for r in rows} == {"ep-a": 10, "ep-b": 15}
    out = tmp_path / "r.html"
    assert main(["report", str(root), "--out", str(out)]) == 0
    assert "2 episodes" in capsys.readouterr().out and out.stat().st_size > 10_000


def test_a_record_file_that_changed_since_it_was_indexed_is_read_from_the_file(root):
    st = Storage(str(root))
    write_episode_index(st, "run1")
    # Rewritten (by hand: the writer never rewrites a record) with other content, hence another size.
    changed = pq.read_table(str(record(root, "ep-a")))
    changed = changed.set_column(
        changed.schema.get_field_index("scaffold_id"), "scaffold_id", pa.array(["rewritten-scaffold-id"])
    )
    pq.write_table(changed, str(record(root, "ep-a")), compression="zstd")
    rows = automem.query(str(root), EPISODES).to_pylist()
    assert [r["scaffold_id"] for r in rows] == ["rewritten-scaffold-id", "s0"]
    indexed, files = episode_records(st)
    assert indexed["episode_id"].to_pylist() == ["ep-b"] and files == [str(record(root, "ep-a"))]


def test_a_corrupt_record_file_is_not_hidden_by_the_index(root, tmp_path, capsys):
    st = Storage(str(root))
    write_episode_index(st, "run1")
    path = record(root, "ep-a")
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a partial copy
    with pytest.raises(StoreFileError, match="cannot be read") as err:
        automem.query(str(root), EPISODES)
    assert err.value.path == str(path)
    for read in (lambda: load(str(root)), lambda: committed_keys(str(root))):
        with pytest.raises(StoreFileError, match="cannot be read"):
            read()
    for command, argv in (
        ("query", [EPISODES]),
        ("diagnose", []),
        ("report", ["--out", str(tmp_path / "r.html")]),
    ):
        assert main([command, str(root), *argv]) == 2
        one_line_error(capsys, command, path)


def test_an_index_written_before_it_held_sizes_is_still_used_and_rewritten_from_the_files(root):
    st = Storage(str(root))
    old = read_episode_records(st, run_id="run1")  # the index as older versions wrote it: the records only
    assert INDEX_SIZE not in old.column_names
    st.write_table(index_path(st, "run1"), old)
    indexed, files = episode_records(st)
    assert indexed.num_rows == 2 and files == []  # trusted as before
    assert automem.query(str(root), EPISODES).to_pylist() == expected_episodes()
    # Rewriting it takes the rows from the files (the old index cannot vouch for them) and adds their sizes.
    assert write_episode_index(st, "run1") == 2
    new = pq.read_table(index_path(st, "run1"))
    assert new[INDEX_SIZE].to_pylist() == [record(root, e).stat().st_size for e in ("ep-a", "ep-b")]
    assert new.drop_columns([INDEX_SIZE]).equals(old.sort_by("episode_id"))


# -- files whose rows are not the episode their name says --------------------------------------------------------


@pytest.mark.parametrize("indexed", [False, True])
def test_a_steps_file_under_another_episodes_name_is_an_error_naming_it(root, indexed):
    if indexed:
        write_episode_index(Storage(str(root)), "run1")
    bad = steps_file(root, "ep-a")
    shutil.copy(steps_file(root, "ep-b"), bad)  # ep-b's 15 steps, named as ep-a's
    says = f"{bad}: holds rows of episode run1/ep-b, not of run1/ep-a as its name says"
    with pytest.raises(duckdb.Error) as err:
        automem.query(str(root), STEPS)
    assert str(err.value).endswith(says) and "\n" not in str(err.value)
    with pytest.raises(duckdb.Error, match="as its name says"):
        automem.query(str(root), "SELECT count(*) FROM steps")
    assert automem.query(str(root), EPISODES).to_pylist() == expected_episodes()  # steps not read: fine
    with pytest.raises(StoreFileError) as err:
        load(str(root))
    assert str(err.value) == says and err.value.path == str(bad)
    with pytest.raises(StoreFileError, match="as its name says"):
        load(str(root), ("steps",), run_id="run1")
    with pytest.raises(StoreFileError) as err:
        dataset(str(root), "steps")
    assert str(err.value) == says
    assert dataset(str(root), "turns").count_rows() == 25 * 3  # the other tables' files are fine


def test_views_over_registered_datasets_check_names_too(root):
    # The S3 branch (pyarrow datasets registered in DuckDB), run on the local filesystem.
    bad = steps_file(root, "ep-a")
    shutil.copy(steps_file(root, "ep-b"), bad)
    st = Storage(str(root))
    st.is_s3 = True
    con = connect(st)
    assert con.sql("SELECT count(*) FROM turns").fetchall() == [(25 * 3,)]
    with pytest.raises(duckdb.Error, match=f"{bad}: holds rows of episode run1/ep-b, not of run1/ep-a"):
        con.sql(STEPS).fetchall()


def test_query_diagnose_and_report_refuse_a_steps_file_under_another_episodes_name(root, tmp_path, capsys):
    bad = steps_file(root, "ep-a")
    shutil.copy(steps_file(root, "ep-b"), bad)
    for command, argv in (
        ("query", [STEPS]),
        ("diagnose", []),
        ("diagnose", ["--per-episode", "--json"]),
        ("report", ["--out", str(tmp_path / "r.html")]),
    ):
        assert main([command, str(root), *argv]) == 2, (command, argv)
        assert "as its name says" in one_line_error(capsys, command, bad)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("where", ["another_episode", "another_run"])
def test_a_record_file_under_another_name_is_an_error_naming_it(root, capsys, where):
    bad = record(root, "ep-c") if where == "another_episode" else record(root, "ep-a", run="run2")
    bad.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(record(root, "ep-a"), bad)
    with pytest.raises(duckdb.Error, match=f"{bad}: holds rows of episode run1/ep-a"):
        automem.query(str(root), EPISODES)
    for read in (
        lambda: load(str(root)),
        lambda: committed_keys(str(root)),
        lambda: dataset(str(root), "episodes"),
    ):
        with pytest.raises(StoreFileError, match=f"{bad}: holds rows of episode run1/ep-a"):
            read()
    assert main(["query", str(root), EPISODES]) == 2
    one_line_error(capsys, "query", bad)


# -- files that cannot be read -----------------------------------------------------------------------------------


def test_an_unreadable_steps_file_is_an_error_naming_it(root, capsys):
    bad = steps_file(root, "ep-a")
    data = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))  # no footer
    for read in (lambda: load(str(root)), lambda: dataset(str(root), "steps")):
        with pytest.raises(StoreFileError, match="cannot be read") as err:
            read()
        assert err.value.path == str(bad) and "\n" not in str(err.value)
    assert main(["query", str(root), STEPS]) == 2
    one_line_error(capsys, "query", bad)
    # A damaged page, not the footer: pyarrow's own error names no file; the reader finds it.
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xaa" * 16
    bad.write_bytes(bytes(data))
    with pytest.raises(StoreFileError, match="cannot be read") as err:
        load(str(root), ("steps",))
    assert err.value.path == str(bad)


def test_checks_cost_no_rows_of_intact_stores(root):
    # The checks add no column and drop no row: the readers agree with each other on an intact store.
    write_episode_index(Storage(str(root)), "run1")
    write_episode(root, "run1", "ep-c", steps(3), seed=3)  # committed after the index
    tables = load(str(root))
    assert (
        tables["steps"].num_rows
        == automem.query(str(root), "SELECT count(*) AS n FROM steps")["n"][0].as_py()
    )
    assert tables["steps"].column_names == dataset(str(root), "steps").schema.names
    assert pc.unique(tables["steps"]["episode_id"]).to_pylist() == ["ep-a", "ep-b", "ep-c"]
