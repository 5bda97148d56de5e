# Run: .venv/bin/python -m pytest tests/unit/test_diagnostics_query.py
"""`automem query` / `automem.query`: committed rows only, output formats, episode selection, and the
`automem diagnose` command line (groups, JSON, comparison of two stores and of scaffolds in one store)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from automem.diagnostics.synthetic import Step, write_episode
from pipelines.cli import main


def steps(n=3, key=True):
    return [
        Step(
            f"obs {t}\n</script><b>",
            log=[f"APPEND notes.md fact {t}"],
            plan=["SEARCH fact"],
            state_key=str(t),
        )
        for t in range(n)
    ]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_episode(root, "run1", "ep-a", steps(3), seed=1)
    write_episode(root, "run1", "ep-b", steps(4), seed=2)
    write_episode(
        root, "run1", "ep-crashed", steps(5), commit=False
    )  # rows stored, commit record never written
    # An episode whose first attempt crashed at its commit point and whose second attempt committed.
    write_episode(root, "run1", "ep-retried", steps(6), seed=3, commit=False)
    write_episode(root, "run1", "ep-retried", steps(2), seed=3, attempt=2)
    return str(root)


def test_only_committed_rows_are_visible(store):
    import automem

    counts = automem.query(
        store,
        "SELECT (SELECT count(*) FROM episodes) e, (SELECT count(*) FROM steps) s, "
        "(SELECT count(*) FROM turns) t, (SELECT count(*) FROM memory_ops) o, "
        "(SELECT count(*) FROM memory_files) f",
    ).to_pylist()[0]
    assert counts == {"e": 3, "s": 9, "t": 9 * 3, "o": 9 * 2, "f": 3}
    for table in ("steps", "turns", "memory_ops", "memory_files"):
        ids = automem.query(store, f"SELECT DISTINCT episode_id, attempt FROM {table} ORDER BY 1").to_pylist()
        assert ids == [
            {"episode_id": "ep-a", "attempt": 1},
            {"episode_id": "ep-b", "attempt": 1},
            {"episode_id": "ep-retried", "attempt": 2},
        ], table


def test_query_returns_arrow_and_keeps_types(store):
    import automem

    t = automem.query(
        store,
        "SELECT args, ok, started_at FROM memory_ops JOIN episodes USING (run_id, episode_id, attempt) LIMIT 1",
    )
    assert isinstance(t, pa.Table)
    assert pa.types.is_list(t.schema.field("args").type) and pa.types.is_timestamp(
        t.schema.field("started_at").type
    )


def test_import_automem_is_light_and_exports_query_lazily():
    code = (
        "import sys, automem; heavy = [m for m in ('duckdb', 'pyarrow', 'ray') if m in sys.modules]; "
        "assert not heavy, heavy; f = automem.query; assert callable(f) and 'duckdb' not in sys.modules; "
        "assert 'ray' not in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_cli_table_csv_and_json(store, capsys):
    sql = "SELECT episode_id, steps, progression FROM episodes ORDER BY episode_id"
    assert main(["query", store, sql]) == 0
    out = capsys.readouterr().out
    assert "episode_id" in out and "ep-b" in out and "(3 rows)" in out
    assert main(["query", store, sql, "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "episode_id,steps,progression",
        "ep-a,3,0.0",
        "ep-b,4,0.0",
        "ep-retried,2,0.0",
    ]
    assert (
        main(
            [
                "query",
                store,
                "SELECT episode_id, args FROM memory_ops ORDER BY episode_id, step LIMIT 2",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {"episode_id": "ep-a", "args": ["notes.md", "fact 0"]},
        {"episode_id": "ep-a", "args": ["fact"]},
    ]
    assert main(["query", store, "SELECT nope FROM nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_episode_selection_by_ids_and_by_query(store):
    from automem.analytics import connect

    con = connect(store, episodes="run1/ep-b")
    assert con.sql("SELECT count(*) FROM steps").fetchall() == [(4,)]
    con = connect(store, episodes="SELECT episode_id FROM episodes WHERE seed = 1")
    assert con.sql("SELECT list(DISTINCT episode_id) FROM memory_ops").fetchall() == [(["ep-a"],)]
    with pytest.raises(ValueError, match="ep-crashed"):
        connect(store, episodes="ep-crashed")  # uncommitted episodes cannot be selected either
    with pytest.raises(ValueError, match="episode_id"):
        connect(store, episodes="SELECT seed FROM episodes")


def test_empty_store_has_empty_views(tmp_path):
    import automem

    assert automem.query(str(tmp_path), "SELECT count(*) n FROM steps").to_pylist() == [{"n": 0}]


# -- automem diagnose ---------------------------------------------------------------------------------------------


def test_diagnose_cli_text_and_json(store, capsys):
    assert main(["diagnose", store]) == 0
    out = capsys.readouterr().out
    assert "redundant_write_rate" in out and "s0 / m" in out
    assert main(["diagnose", store, "--by", "env", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["env_id"] for r in rows] == ["corridor-v0"] and rows[0]["episodes"] == 3
    assert main(["diagnose", store, "--per-episode", "--json"]) == 0
    assert {r["episode_id"] for r in json.loads(capsys.readouterr().out)} == {"ep-a", "ep-b", "ep-retried"}


def _same_seeds_store(root, scaffold, redundant):
    for seed in range(4):
        texts = ["APPEND n.md same" if redundant else f"APPEND n.md fact {t}" for t in range(3)]
        write_episode(
            root,
            f"run-{scaffold}",
            f"e{seed}",
            [Step("o", log=[texts[t]], state_key=str(t)) for t in range(3)],
            seed=seed,
            scaffold_id=scaffold,
        )


def test_diagnose_compares_two_stores_paired_by_seed(tmp_path, capsys):
    _same_seeds_store(tmp_path / "a", "base", redundant=True)
    _same_seeds_store(tmp_path / "b", "cand", redundant=False)
    assert main(["diagnose", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    rows = {r["measure"]: r for r in json.loads(capsys.readouterr().out)}
    r = rows["redundant_write_rate"]
    assert r["paired"] and (r["value_a"], r["value_b"]) == (pytest.approx(2 / 3), 0.0)
    assert r["diff"] == pytest.approx(-2 / 3) and r["verdict"] == "better"
    assert rows["progression"]["verdict"] == "same"
    assert main(["diagnose", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "paired by seed" in capsys.readouterr().out


def test_diagnose_compare_within_one_store(tmp_path, capsys):
    _same_seeds_store(tmp_path, "base", redundant=True)
    _same_seeds_store(tmp_path, "cand", redundant=False)
    write_episode(tmp_path, "run-cand", "extra", [Step("o")], seed=99, scaffold_id="cand")  # seeds now differ
    assert main(["diagnose", str(tmp_path), "--compare", "scaffold", "--baseline", "base", "--json"]) == 0
    rows = {r["measure"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["redundant_write_rate"]["a"] == "base" and rows["redundant_write_rate"]["b"] == "cand"
    assert not rows["redundant_write_rate"]["paired"]
    assert rows["redundant_write_rate"]["verdict"] == "better"
    assert main(["diagnose", str(tmp_path), "--compare", "scaffold", "--baseline", "nope"]) == 2
