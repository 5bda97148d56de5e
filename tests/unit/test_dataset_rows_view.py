# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_dataset_rows_view.py
"""`automem query`'s `dataset_rows` view: the rows of every complete Loop 2 dataset of a root, with its id, through
the same SQL sandbox as the store's views. A dataset without its manifest (a build cut short) is not visible, and
its files, the manifests and anything a link points to outside the root stay unreadable."""

from __future__ import annotations

import os
import shutil

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from automem.distill import DatasetConfig, build_dataset
from automem.distill.dataset import complete_datasets
from automem.trajectory import Storage, connect, query
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode

SECRET = "s3cr3t-value-0451"
STEPS = [
    Step("o0", log=["APPEND a.md tree north"]),
    Step("o1", log=["APPEND a.md rock"], plan=["SEARCH tree"]),
    Step("o2", plan=["READ a.md"]),
]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_episode(root, "r1", "e0", STEPS, seed=0, progression=0.8)
    write_episode(root, "r1", "e1", STEPS[:2], seed=1, progression=0.2)
    return str(root)


def _build(source: str, out: str, strategy: str):
    return build_dataset(DatasetConfig(source=source, strategy=strategy), out)


def _unfinished(result) -> str:
    """A copy of a built dataset without its manifest: a build cut before its last write."""
    folder = os.path.join(os.path.dirname(result.path), "unfinished")
    shutil.copytree(result.path, folder)
    os.remove(os.path.join(folder, "manifest.json"))
    return folder


def test_the_rows_of_every_complete_dataset_with_its_id(store):
    a = _build(store, store, "wellformed")
    b = _build(store, store, "wellformed+utility")  # one more score column: the view unites them by name
    _unfinished(a)
    rows = query(
        store, "SELECT * FROM dataset_rows ORDER BY dataset_id, run_id, episode_id, step, phase, turn"
    )
    assert rows.column_names[0] == "dataset_id"
    assert {"score_wellformed", "score_utility", "messages", "completion"} <= set(rows.column_names)
    by_id = {
        did: [r for r in rows.to_pylist() if r["dataset_id"] == did] for did in (a.dataset_id, b.dataset_id)
    }
    assert sorted({r["dataset_id"] for r in rows.to_pylist()}) == sorted(by_id)  # not the unfinished one
    for result in (a, b):
        written = pq.read_table(os.path.join(result.path, "rows.parquet")).to_pylist()
        got = [{k: v for k, v in r.items() if k in written[0]} for r in by_id[result.dataset_id]]
        key = lambda r: (r["run_id"], r["episode_id"], r["step"], r["phase"], r["turn"])  # noqa: E731
        assert got == sorted(written, key=key) and len(got) == result.manifest["rows"]
    assert {r["score_utility"] for r in by_id[a.dataset_id]} == {None}
    # Joins with the store's views, as the trajectory tables do.
    joined = query(
        store,
        "SELECT count(*) AS n FROM dataset_rows d JOIN episodes e USING (run_id, episode_id, attempt) "
        f"WHERE d.dataset_id = '{a.dataset_id}'",
    )
    assert joined.to_pylist() == [{"n": a.manifest["rows"]}]


def test_a_root_without_datasets_has_an_empty_view_with_the_columns(store):
    rows = query(store, "SELECT * FROM dataset_rows")
    assert rows.num_rows == 0
    assert rows.column_names[:3] == ["dataset_id", "messages", "completion"]


def test_a_root_of_datasets_only_is_queried_by_the_cli(store, tmp_path, capsys):
    out = str(tmp_path / "data")
    result = _build(store, out, "wellformed")
    _unfinished(result)
    assert complete_datasets(Storage(out)) == {result.dataset_id: f"{result.path}/rows.parquet"}
    assert (
        main(["query", out, "SELECT dataset_id, count(*) AS n FROM dataset_rows GROUP BY 1", "--json"]) == 0
    )
    assert f'"dataset_id": "{result.dataset_id}"' in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["query", str(empty), "SELECT * FROM dataset_rows"]) == 2
    assert "no trajectory store" in capsys.readouterr().err


def test_sql_reads_no_other_file_of_datasets_and_no_linked_file(store, tmp_path, capsys):
    result = _build(store, store, "wellformed")
    unfinished = _unfinished(result)
    outside = tmp_path / "outside"
    outside.mkdir()
    pq.write_table(pa.table({"key": [SECRET]}), outside / "secret.parquet")
    linked = os.path.join(store, "datasets", "linked")  # a "complete" dataset whose rows are a link outside
    os.makedirs(linked)
    os.symlink(outside / "secret.parquet", os.path.join(linked, "rows.parquet"))
    shutil.copy(os.path.join(result.path, "manifest.json"), linked)
    hostile = [
        f"SELECT * FROM read_parquet('{unfinished}/rows.parquet')",
        f"SELECT * FROM read_text('{result.path}/manifest.json')",
        f"SELECT * FROM read_parquet('{outside}/secret.parquet')",
        f"SELECT * FROM read_parquet('{linked}/rows.parquet')",
        f"SELECT file FROM glob('{store}/datasets/*/*')",
    ]
    for sql in hostile:
        assert main(["query", store, sql]) == 2, sql
        err = capsys.readouterr().err
        assert "Cannot access file" in err and SECRET not in err, err
    # The view names the dataset it cannot read; the other views still work, and so does SQL that skips it.
    con = connect(store)
    with pytest.raises(duckdb.Error, match="linked"):
        con.sql("SELECT * FROM dataset_rows").fetchall()
    assert con.sql("SELECT count(*) FROM episodes").fetchall() == [(2,)]
    con.close()
    # unsafe_sql reads anything, as before.
    assert (
        query(store, f"SELECT * FROM read_parquet('{outside}/secret.parquet')", unsafe_sql=True).num_rows == 1
    )


def test_a_damaged_rows_file_fails_the_view_naming_it(store, capsys):
    result = _build(store, store, "wellformed")
    with open(os.path.join(result.path, "rows.parquet"), "wb") as f:
        f.write(b"not parquet at all")
    assert main(["query", store, "SELECT count(*) FROM dataset_rows"]) == 2
    err = capsys.readouterr().err
    assert f"dataset {result.dataset_id}" in err and "rows.parquet" in err and err.count("\n") == 1
    assert main(["query", store, "SELECT count(*) FROM steps"]) == 0
