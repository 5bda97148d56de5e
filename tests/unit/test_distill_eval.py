"""`automem distill eval` on a stub-model store: every chosen turn is asked again of both models in both modes,
scored against the memory before it, and compared paired; bad input exits 2 naming the fix."""

from __future__ import annotations

import json

import pytest

from automem.distill.turn_eval import METRICS, MODES, select_turns
from automem.rollout import RolloutConfig, run_rollout
from pipelines.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory, stub_model_module):
    root = tmp_path_factory.mktemp("store")
    stub = stub_model_module
    run_rollout(
        RolloutConfig(
            env="crafter-v0",
            episodes=3,
            seeds="1-3",
            max_steps=3,
            model="stub",
            endpoint=stub.url,
            out=str(root),
            run_id="r1",
            executor="local",
        )
    )
    return root, stub


@pytest.fixture(scope="module")
def stub_model_module():
    from automem.llm.stub_server import spawn

    proc, url = spawn(0.0, 0.0, 0.0, 3600.0)

    class Stub:
        pass

    stub = Stub()
    stub.url = url
    yield stub
    proc.terminate()
    proc.wait(timeout=10)


def test_select_turns_takes_the_chosen_seeds_with_their_grammar_and_memory(store):
    root, _ = store
    turns = select_turns(str(root), seeds="2-3")
    assert turns and {t.turn.key[1].split("-s")[-1] for t in turns} == {"2", "3"}
    assert all(t.constraint and t.turn.phase == "log" for t in turns)
    first = [t for t in turns if t.turn.key[3] == 0]
    later = [t for t in turns if t.turn.key[3] == 2]
    # The stub appends a note each LOG turn: memory before step 2 holds what steps 0 and 1 wrote.
    assert first and all("step note" not in t.files.get("notes.md", "") for t in first)
    assert later and all(t.files["notes.md"].count("step note") >= 2 for t in later)
    assert len(select_turns(str(root), seeds="1-3", limit=4)) == 4


def test_eval_cli_compares_both_models_in_both_modes(store, tmp_path, capsys):
    root, stub = store
    out = tmp_path / "eval.json"
    rc = main(
        ["distill", "eval", "--from", str(root), "--seeds", "1-3", "--adapter", "spec", "--endpoint", stub.url,
         "--model", "stub", "--json", str(out)]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    data = json.loads(out.read_text())
    n = len(select_turns(str(root), seeds="1-3"))
    assert len(data["scores"]) == n * 2 * len(MODES)
    assert {(c["mode"], c["metric"]) for c in data["comparisons"]} == {(m, k) for m in MODES for k in METRICS}
    constrained = [s for s in data["scores"] if s["mode"] == "constrained"]
    # The stub always satisfies the grammar: every constrained answer is well-formed and runs.
    assert all(s["wellformed_share"] == 1.0 and s["n_ops"] >= 1 for s in constrained)
    assert {s["model"] for s in data["scores"]} == {"stub", "stub:spec"}
    assert "wellformed_share" in text and "95% interval" in text and f"{n} turns, paired" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seeds", "99"], "no committed log turn of seeds 99"),
        (["--endpoint", "http://127.0.0.1:9/v1"], "not reachable"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_eval_bad_input_exits_2_with_one_line(store, capsys, args, expected):
    root, stub = store
    argv = ["distill", "eval", "--from", str(root), "--adapter", "spec", "--model", "stub"]
    if "--endpoint" not in args:
        argv += ["--endpoint", stub.url]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert expected in err, err


def test_each_evaluation_appends_one_ledger_row_readable_with_sql(store, tmp_path, capsys):
    from automem.trajectory.sql import query

    root, stub = store
    argv = [
        "distill",
        "eval",
        "--from",
        str(root),
        "--seeds",
        "1",
        "--adapter",
        "led",
        "--endpoint",
        stub.url,
    ]
    argv += ["--model", "stub", "--modes", "constrained"]
    assert main(argv) == 0
    assert "ledger: " in capsys.readouterr().out
    rows = query(str(root), "SELECT adapter, base_model, seeds, turns, modes, requests FROM ledger "
                 "WHERE adapter = 'stub:led'").to_pylist()  # fmt: skip
    assert len(rows) == 1
    row = rows[0]
    n = len(select_turns(str(root), seeds="1"))
    assert (row["base_model"], row["seeds"], row["turns"], row["modes"]) == ("stub", "1", n, ["constrained"])
    assert row["requests"] == 2 * n
    # The same evaluation again (same answers, so the same id) is not a second row.
    from automem.distill.ledger import append, ledger_row

    again = ledger_row(adapter="a", base_model="b", lineage=None, source_run=None, seeds="1", turns=1,
                       modes=["free"], comparisons=[], cost={})  # fmt: skip
    assert append(str(root), again)[1] is True and append(str(root), again)[1] is False
    metrics = query(
        str(root), "SELECT m.metric, m.diff, m.lo <= m.diff AND m.diff <= m.hi AS inside FROM ledger, "
        "UNNEST(metrics) AS t(m) WHERE adapter = 'stub:led'"
    ).to_pylist()  # fmt: skip
    assert {m["metric"] for m in metrics} == set(METRICS) and all(m["inside"] for m in metrics)
    # The ledger is one of the store's files the SQL sandbox allows; nothing else under ledger/ is readable.
    (root / "ledger" / "notes.txt").write_text("secret")
    with pytest.raises(Exception, match="(?i)permission|not allowed|disabled"):
        query(str(root), f"SELECT * FROM read_text('{root}/ledger/notes.txt')")


def test_the_ledger_lineage_names_the_strategy_from_the_dataset_manifest(tmp_path, monkeypatch):
    from automem.serving import adapters
    from automem.serving.lineage import AdapterInfo
    from pipelines import distill_eval

    dataset = tmp_path / "datasets" / "d1"
    dataset.mkdir(parents=True)
    (dataset / "manifest.json").write_text(json.dumps({"dataset_id": "d1", "strategy": "clean"}))
    lineage = {"dataset_id": "d1", "dataset": str(dataset), "preset": "cpu-small"}
    monkeypatch.setattr(adapters, "describe_local", lambda: [AdapterInfo("first", 16, None, lineage)])
    assert distill_eval._lineage("first")["strategy"] == "clean"
    (dataset / "manifest.json").unlink()  # the dataset gone: the lineage without a strategy, no error
    assert "strategy" not in distill_eval._lineage("first")
