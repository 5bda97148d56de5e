# Run: .venv/bin/python -m pytest tests/unit/test_diagnostics_query.py
"""`automem query` / `automem.query`: committed rows only, output formats, episode selection, and the
`automem diagnose` command line (groups, JSON, comparison of two stores and of scaffolds in one store)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from pipelines.cli import main
from tests.support.synthetic import Step, write_episode


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
    from automem.trajectory import connect

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
    r = rows["redundant_write_rate"]
    assert r["a"] == "base" and r["b"] == "cand"
    # One seed only B ran: the other four stay paired, and the extra episode is left out (and counted).
    assert r["paired"] and (r["pairs"], r["n_a"], r["n_b"], r["dropped_a"], r["dropped_b"]) == (4, 4, 4, 0, 1)
    assert r["verdict"] == "better"
    assert main(["diagnose", str(tmp_path), "--compare", "scaffold", "--baseline", "base"]) == 0
    out = capsys.readouterr().out
    assert "paired by seed on 4 seeds" in out and "left out 0 episode(s) of A and 1 of B" in out
    assert main(["diagnose", str(tmp_path), "--compare", "scaffold", "--baseline", "nope"]) == 2


def _two_env_store(root, scaffold, envs, seeds=range(3)):
    for env in envs:
        for seed in seeds:
            text = "APPEND n.md same" if scaffold == "base" else f"APPEND n.md {env} {seed}"
            write_episode(
                root,
                "r",
                f"{env}-{seed}",
                [Step("o", log=[text])] * 2,
                env_id=env,
                seed=seed,
                scaffold_id=scaffold,
            )


def test_two_stores_honour_by_and_note_groups_of_one_side(tmp_path, capsys):
    _two_env_store(tmp_path / "a", "base", ["e1", "e2"])
    _two_env_store(tmp_path / "b", "cand", ["e1", "e2", "e3"])
    assert main(["diagnose", str(tmp_path / "a"), str(tmp_path / "b"), "--by", "env", "--json"]) == 0
    captured = capsys.readouterr()
    rows = [r for r in json.loads(captured.out) if r["measure"] == "redundant_write_rate"]
    assert [(r["env_id"], r["n_a"], r["n_b"], r["paired"]) for r in rows] == [
        ("e1", 3, 3, True),
        ("e2", 3, 3, True),
    ]
    assert "e3 (3 episodes), not compared" in captured.err
    assert main(["diagnose", str(tmp_path / "a"), str(tmp_path / "b"), "--by", "env"]) == 0
    out = capsys.readouterr().out
    assert "e1: " in out and "e2: " in out and "note: " in out
    # Without --by, two stores are compared as wholes (not split by the one-store default, scaffold).
    assert main(["diagnose", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    whole = [r for r in json.loads(capsys.readouterr().out) if r["measure"] == "redundant_write_rate"]
    assert len(whole) == 1 and (whole[0]["pairs"], whole[0]["n_a"], whole[0]["n_b"]) == (6, 6, 6)
    assert (whole[0]["dropped_a"], whole[0]["dropped_b"]) == (0, 3)  # e3 is only in B


def test_compare_flag_with_a_second_store_is_a_usage_error(tmp_path, capsys):
    _two_env_store(tmp_path / "a", "base", ["e1"])
    _two_env_store(tmp_path / "b", "cand", ["e1"])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["diagnose", a, b, "--compare", "scaffold"]) == 2
    assert "--compare compares groups within ROOT" in capsys.readouterr().err
    for bad in ([a, "--baseline", "x"], [a, "--episodes-b", "e1-0"], [a, b, "--per-episode"], [a, "--links"]):
        assert main(["diagnose", *bad]) == 2, bad
        assert "error:" in capsys.readouterr().err


def test_episode_selection_applies_to_both_stores_unless_given_for_b(tmp_path, capsys):
    _two_env_store(tmp_path / "a", "base", ["e1"], seeds=range(4))
    _two_env_store(tmp_path / "b", "cand", ["e1"], seeds=range(4))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    sel = "SELECT episode_id FROM episodes WHERE seed < 3"
    assert main(["diagnose", a, b, "--episodes", sel, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)[0]
    assert (r["n_a"], r["n_b"]) == (3, 3)
    assert main(["diagnose", a, b, "--episodes", sel, "--episodes-b", "e1-0,e1-1,e1-2,e1-3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)[0]
    assert (r["n_a"], r["n_b"], r["pairs"], r["dropped_b"]) == (3, 3, 3, 1)  # B's seed 3 has no pair


def test_diagnose_json_has_memory_over_steps_and_bounded_provenance(store, capsys):
    assert main(["diagnose", store, "--json"]) == 0
    group = json.loads(capsys.readouterr().out)[0]
    assert [p["step"] for p in group["memory_by_step"]] == [0, 1, 2, 3]  # the longest episode has 4 steps
    assert [p["episodes"] for p in group["memory_by_step"]] == [3, 3, 2, 1]
    assert main(["diagnose", store, "--per-episode", "--json"]) == 0
    per = {r["episode_id"]: r for r in json.loads(capsys.readouterr().out)}
    ep_b = per["ep-b"]  # 4 steps, each appending "fact t" and then searching "fact"
    assert [p["bytes"] for p in ep_b["memory_by_step"]] == [7, 14, 21, 28]
    assert (ep_b["linked_reads"], ep_b["read_links"]) == (4, 1 + 2 + 3 + 4)
    assert "links" not in ep_b
    assert main(["diagnose", store, "--per-episode", "--json", "--links", "--max-links", "3"]) == 0
    ep_b = {r["episode_id"]: r for r in json.loads(capsys.readouterr().out)}["ep-b"]
    assert ep_b["links_total"] == 10 and len(ep_b["links"]) == 3
    assert ep_b["links"][2] == {
        "read": {"step": 1, "phase": "plan", "turn": 0, "seq": 0, "op": "SEARCH", "line": 1},
        "write": {"step": 1, "phase": "log", "turn": 0, "seq": 0, "op": "APPEND"},
    }
    assert main(["diagnose", store, "--per-episode"]) == 0
    assert "memory_by_step" not in capsys.readouterr().out  # the text table stays flat


# -- a root that is not a store ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["query", "{root}", "SELECT 1"], ["diagnose", "{root}"], ["report", "{root}", "--out", "{out}"]],
)
def test_a_missing_or_empty_root_is_an_error(tmp_path, capsys, command):
    out = str(tmp_path / "r.html")
    for root, says in ((tmp_path / "nope", "does not exist"), (tmp_path, "no trajectory store here")):
        assert main([c.format(root=root, out=out) for c in command]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "command", [["query", "s3://bucket/store", "SELECT 1"], ["report", "s3://bucket/store", "--out", "{out}"]]
)
def test_an_unreachable_s3_endpoint_is_one_line(tmp_path, capsys, monkeypatch, command):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    argv = [c.format(out=tmp_path / "r.html") for c in command]
    assert main([*argv, "--retry-s", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"automem {argv[0]}: cannot read s3://bucket/store") and str(port) in err


def test_query_from_python_on_a_missing_folder_is_an_error(tmp_path):
    from automem import query

    with pytest.raises(FileNotFoundError, match="does not exist"):
        query(str(tmp_path / "typo"), "SELECT count(*) FROM episodes")
