# Run: .venv/bin/python -m pytest tests/unit/test_distill_dataset.py
"""Loop 2 datasets from the store: each strategy on hand-built episodes with known answers, the post-process on
crafted completions (and a property: its output always parses), ids stable across builds, the manifest last, bad
input refused with nothing written. Episodes run their memory operations through the real memory code."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automem.distill import DatasetConfig, DistillError, build_dataset, postprocess, read_source, select
from automem.distill.postprocess import operations
from automem.memory.ops import READ_ONLY_OPS, REGISTRY
from automem.trajectory import Storage

try:
    from tests.support.synthetic import Step, write_episode
except ImportError:  # before the move to tests/support
    from automem.diagnostics.synthetic import Step, write_episode  # type: ignore[no-redef]

ALL = list(REGISTRY)
READS = [o for o in REGISTRY if o in READ_ONLY_OPS]

# One episode whose answers are known: (step, phase, turn) -> kept by utility?
STEPS = [
    Step("o0", log=["APPEND a.md tree north"]),  # read by the SEARCH of step 1: kept
    Step(
        "o1", log=["APPEND a.md tree north"], plan=["SEARCH tree"]
    ),  # redundant write (though read): not kept
    Step("o2", log=["READ nope.md\nAPPEND a.md rock"], plan=["READ a.md"]),  # a failed operation: not kept
    Step("o3", log=["APPEND a.md never read"], plan=["LIST"]),  # never read / a read of no line: not kept
]
UTILITY = {(0, "log", 0), (1, "plan", 0), (2, "plan", 0)}
WELLFORMED = {(0, "log", 0), (1, "log", 0), (1, "plan", 0), (2, "plan", 0), (3, "log", 0), (3, "plan", 0)}


def _kept(root, strategy, **kw):
    config = DatasetConfig(source=str(root), strategy=strategy, **kw)
    source = read_source(Storage(str(root)))
    keep, scores, _ = select(source, config)
    return {t.key for t, k in zip(source.turns, keep, strict=True) if k}, scores


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_episode(root, "r1", "e0", STEPS, seed=0, progression=0.8)
    return root


def test_a_turn_is_the_exact_prompt_the_agent_saw(store):
    source = read_source(Storage(str(store)))
    first = source.turns[0]
    assert first.key == ("r1", "e0", 1, 0, "log", 0)
    assert first.messages[0]["role"] == "system" and first.messages[0]["content"].startswith("You are a test")
    assert first.messages[1:] == [{"role": "user", "content": "step 0 log"}]  # messages_json, as stored
    assert first.completion == "APPEND a.md tree north"
    assert len(source.turns) == 7  # memory turns only: the action turns are not candidates


def test_utility_keeps_writes_read_later_and_linked_reads_only(store):
    kept, scores = _kept(store, "utility")
    assert {k[3:] for k in kept} == UTILITY
    # (1, log): its line was returned by the SEARCH, yet the write is redundant; (2, log) was read but failed.
    assert scores["utility"][1] == 1.0 and (1, "log", 0) not in {k[3:] for k in kept}


def test_clean_keeps_writes_and_answered_reads_without_waste(store):
    kept, _ = _kept(store, "clean")
    # utility's picks plus (3, log), a clean write never read; not the redundant (1, log), the failed (2, log),
    # nor (3, plan), a LIST (no line read).
    assert {k[3:] for k in kept} == {(0, "log", 0), (1, "plan", 0), (2, "plan", 0), (3, "log", 0)}
    write_episode(store, "r1", "e1", [Step("o0", log=["APPEND a.md x"], plan=["SEARCH x\nSEARCH x"])], seed=1)
    kept, _ = _kept(store, "clean")
    assert ("r1", "e1", 1, 0, "plan", 0) not in kept, "a repeated operation in the turn"
    assert ("r1", "e1", 1, 0, "log", 0) in kept


def test_wellformed_needs_an_operation_and_no_failed_one(store):
    kept, scores = _kept(store, "wellformed")
    assert {k[3:] for k in kept} == WELLFORMED
    assert scores["wellformed"][3] == 0.5  # (2, log): one of its two operations failed


def test_outcome_keeps_episodes_at_or_above_the_median_of_their_env_and_seed(store):
    write_episode(store, "r1", "e1", STEPS, seed=0, progression=0.2)  # same seed, worse: below the median
    write_episode(store, "r1", "e2", STEPS, seed=5, progression=0.1)  # alone on its seed: its own median
    kept, _ = _kept(store, "outcome")
    assert {k[1] for k in kept} == {"e0", "e2"}
    kept, _ = _kept(store, "outcome", quantile=0.0)
    assert {k[1] for k in kept} == {"e0", "e1", "e2"}
    both, _ = _kept(store, "utility+outcome")
    assert {(k[1], *k[3:]) for k in both} == {(e, *u) for e in ("e0", "e2") for u in UTILITY}


def test_unknown_strategy_is_refused_by_the_config():
    with pytest.raises(ValueError, match="unknown strategy 'vibes'"):
        DatasetConfig(source="x", strategy="utility+vibes")


# -- post-process ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "enabled", "expected"),
    [
        ("```\nAPPEND a.md hi\nDONE\n```", ALL, "APPEND a.md hi\nDONE"),  # fences unwrapped
        (
            "APPEND a.md hi\nDONE\nAPPEND a.md later\nsome chatter",
            ALL,
            "APPEND a.md hi\nDONE",
        ),  # cut after DONE
        ("READ a.md\nmove_left\nDONE", READS, "READ a.md\nDONE"),  # action text in PLAN dropped
        (
            "READ a.md\nI will move left now.\nAPPEND a.md x",
            READS,
            "READ a.md\nDONE",
        ),  # prose and a write too
        ("- **APPEND** a.md hi", ALL, "- **APPEND** a.md hi\nDONE"),  # what the parser reads stays as written
        ("noop", READS, None),  # no operation: dropped
        ("DONE", ALL, None),
        ("```text\n```", ALL, None),
    ],
)
def test_postprocess_on_crafted_completions(text, enabled, expected):
    assert postprocess(text, enabled) == expected


_LINES = st.one_of(
    st.sampled_from(
        [
            "APPEND a.md found water",
            "READ a.md",
            'SEARCH "iron" *',
            "WRITE b.md x",
            "UPSERT a.md hp 5",
            "DONE",
            "**Done.**",
            "```",
            "```text",
            "move_left",
            "- LIST",
            "READ",
            'APPEND a.md "unterminated',
            "",
        ]
    ),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINES, max_size=8), plan=st.booleans())
def test_postprocess_output_always_parses_and_is_a_fixed_point(lines, plan):
    enabled = READS if plan else ALL
    out = postprocess("\n".join(lines), enabled)
    if out is None:
        return
    ops = operations(out, enabled)
    assert ops, out  # parses with no error, only enabled operations, at least one
    assert out.endswith("\nDONE")
    assert postprocess(out, enabled) == out


# -- datasets ----------------------------------------------------------------------------------------------------


def test_dataset_rows_funnel_holdout_and_dedupe(store, tmp_path):
    write_episode(store, "r1", "e1", STEPS, seed=0, progression=0.8)  # the same turns again: exact duplicates
    write_episode(store, "r1", "h0", STEPS, seed=1000, progression=0.9)  # a held-out seed
    out = tmp_path / "out"
    res = build_dataset(
        DatasetConfig(source=str(store), strategy="utility", holdout_seeds="1000-1031"), str(out)
    )
    m = res.manifest
    assert m["funnel"] == {
        "memory_turns": 21,
        "not_held_out": 14,
        "selected": 6,
        "by_strategy": {"utility": 6},
        "with_operations": 6,
        "unique": 3,
    }
    assert m["holdout_seeds"] == "1000-1031" and m["held_out_episodes"] == 1
    assert m["sources"] == [{"root": str(store), "run_ids": ["r1"]}]
    table = pq.read_table(out / "datasets" / res.dataset_id / "rows.parquet")
    rows = table.to_pylist()
    assert {r["seed"] for r in rows} == {0} and {r["episode_id"] for r in rows} == {"e0"}
    assert [(r["step"], r["phase"], r["turn"]) for r in rows] == sorted(UTILITY)
    assert rows[0]["completion"] == "APPEND a.md tree north\nDONE"
    assert json.loads(rows[0]["messages"])[0]["role"] == "system"
    assert table.column_names[-1] == "score_utility" and m["rows"] == 3


def test_dataset_id_is_stable_and_a_second_build_writes_nothing(store, tmp_path):
    config = DatasetConfig(source=str(store), strategy="wellformed")
    a = build_dataset(config, str(tmp_path / "a"))
    b = build_dataset(config, str(tmp_path / "b"))
    assert a.dataset_id == b.dataset_id and a.manifest["content_hash"] == b.manifest["content_hash"]
    again = build_dataset(config, str(tmp_path / "a"))
    assert again.existed and again.dataset_id == a.dataset_id
    other = build_dataset(DatasetConfig(source=str(store), strategy="utility"), str(tmp_path / "a"))
    assert other.dataset_id != a.dataset_id


class _Recording(Storage):
    def __init__(self, root: str, fail_rows: bool = False) -> None:
        super().__init__(root)
        self.writes: list[str] = []
        self.fail_rows = fail_rows

    def write_table(self, path, table):
        if self.fail_rows:
            raise OSError("disk full")
        super().write_table(path, table)  # through write_bytes, which records it

    def write_bytes(self, path, data):
        self.writes.append(path)
        super().write_bytes(path, data)


def test_the_manifest_is_written_last_and_not_at_all_when_the_build_fails(store, tmp_path):
    config = DatasetConfig(source=str(store))
    rec = _Recording(str(tmp_path / "ok"))
    res = build_dataset(config, rec)
    assert [p.rsplit("/", 1)[1] for p in rec.writes] == ["rows.parquet", "manifest.json"]
    assert (
        json.loads((tmp_path / "ok" / "datasets" / res.dataset_id / "manifest.json").read_text())["rows"] == 6
    )
    broken = _Recording(str(tmp_path / "broken"), fail_rows=True)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(config, broken)
    assert not list((tmp_path / "broken").rglob("manifest.json"))


def test_an_empty_selection_or_a_store_without_commits_is_refused(store, tmp_path):
    with pytest.raises(DistillError, match="selection is empty"):
        build_dataset(
            DatasetConfig(source=str(store), strategy="utility", holdout_seeds="0"), str(tmp_path / "o")
        )
    with pytest.raises(DistillError, match="no committed episodes"):
        build_dataset(DatasetConfig(source=str(store), run_id="nope"), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


# -- the command -------------------------------------------------------------------------------------------------


def test_cli_builds_a_dataset_and_refuses_bad_input_with_exit_2(store, tmp_path, capsys):
    from pipelines.cli import main

    out = tmp_path / "out"
    args = ["distill", "dataset", "--from", str(store), "--out", str(out)]
    assert main([*args, "--strategy", "utility+outcome", "--holdout-seeds", "1000-1031"]) == 0
    printed = capsys.readouterr().out
    assert "memory_turns: 7" in printed and "unique: 3" in printed
    did = printed.strip().splitlines()[-1].split()[1]
    assert (out / "datasets" / did / "manifest.json").exists()
    for bad, why in [
        (["--strategy", "vibes"], "unknown strategy"),
        (["--strategy", "utility", "--holdout-seeds", "0"], "selection is empty"),
        (["--run", "nope"], "no committed episodes"),
    ]:
        bad_out = tmp_path / "bad"
        argv = ["distill", "dataset", "--from", str(store), "--out", str(bad_out), *bad]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err, err
        assert not bad_out.exists()
    assert (
        main(["distill", "dataset", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_the_runs_scaffold_decides_which_operations_a_target_keeps(tmp_path):
    from automem.scaffold.io import load, to_yaml
    from automem.trajectory import write_manifest

    root = tmp_path / "store"
    write_episode(root, "r1", "e0", [Step("o", log=["CREATE b.md\nDELETE b.md"])])
    write_manifest(Storage(str(root)), "r1", {"scaffold_yaml": to_yaml(load("crafter-v0"))})  # no DELETE
    source = read_source(Storage(str(root)))
    assert "DELETE" not in source.enabled("r1", "log") and source.enabled("r1", "plan") == (
        "LIST",
        "READ",
        "TAIL",
        "COUNT",
        "SEARCH",
    )
    res = build_dataset(DatasetConfig(source=str(root)), str(tmp_path / "out"))
    rows = pq.read_table(f"{res.path}/rows.parquet").to_pylist()
    assert [r["completion"] for r in rows] == ["CREATE b.md\nDONE"]


# The optional judge strategy: a model grades each turn, its answer held to a JSON schema.


class FakeJudge:
    """A ChatModel that grades a turn 9 when it writes (APPEND) and 2 otherwise; records what it was asked."""

    def __init__(self, answer: str | None = None) -> None:
        self.asked: list[list[dict[str, str]]] = []
        self.answer = answer

    async def chat(self, messages, *, model, sampling=None, constraint=None):
        from automem.llm.protocol import ChatResult

        self.asked.append(messages)
        score = 9 if "APPEND" in messages[-1]["content"].split("What the agent wrote:")[-1] else 2
        text = self.answer if self.answer is not None else json.dumps({"score": score, "reason": "r"})
        return ChatResult(text=text, prompt_tokens=1, completion_tokens=1, latency_s=0.0, model=model)


def _judged(**kw):
    return dict(strategy="judge", judge_url="http://127.0.0.1:9/v1", judge_model="grader", **kw)


def test_judge_keeps_the_turns_the_model_grades_well_and_grades_only_survivors(store, monkeypatch):
    from automem.distill import judge as judge_module

    fake = FakeJudge()
    monkeypatch.setattr(judge_module, "JSONSchemaClient", lambda url: fake)
    kept, scores = _kept(store, "judge", **{k: v for k, v in _judged().items() if k != "strategy"})
    assert {k[3:] for k in kept} == {(0, "log", 0), (1, "log", 0), (2, "log", 0), (3, "log", 0)}
    assert sorted(set(scores["judge"])) == [0.2, 0.9] and len(fake.asked) == 7
    system, user = fake.asked[0]
    assert system["role"] == "system" and "JSON" in system["content"]
    assert "Phase: LOG" in user["content"] and "step 0 log" in user["content"]  # the prompt the agent saw
    fake.asked.clear()
    kept, scores = _kept(store, "wellformed+judge", judge_url="http://x/v1", judge_model="grader")
    assert len(fake.asked) == len(WELLFORMED)  # the judge saw only what wellformed kept
    assert {k[3:] for k in kept} == {(0, "log", 0), (1, "log", 0), (3, "log", 0)}
    # The grading model is part of what defines the rows (the id); other datasets' ids are unchanged.
    assert DatasetConfig(source="x", **_judged()).selection()["judge_model"] == "grader"
    assert "judge_model" not in DatasetConfig(source="x").selection()


def test_judge_needs_an_endpoint_and_refuses_an_answer_outside_the_schema(store):
    from pydantic import ValidationError

    from automem.distill.judge import JudgeError, judge_with

    with pytest.raises(ValidationError, match="judge_url and judge_model"):
        DatasetConfig(source=str(store), strategy="wellformed+judge")
    config = DatasetConfig(source=str(store), **_judged())
    source = read_source(Storage(str(store)))
    for answer in ("not json", '{"score": 11, "reason": ""}', '{"reason": "no score"}', '{"score": true}'):
        with pytest.raises(JudgeError, match="not {'score'"):
            judge_with(source, config, FakeJudge(answer))


def test_judge_asks_an_openai_endpoint_for_a_json_schema_answer(store, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            score = 8 if "SEARCH" in body["messages"][-1]["content"] else 1
            reply = {
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": json.dumps({"score": score, "reason": "ok"}),
                        }
                    }
                ],
                "model": body["model"],
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = DatasetConfig(source=str(store), strategy="judge", judge_url=url, judge_model="grader")
        result = build_dataset(config, str(tmp_path / "out"))
    finally:
        server.shutdown()
    assert len(bodies) == 7 and all(b["model"] == "grader" and b["temperature"] == 0.0 for b in bodies)
    fmt = bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["score", "reason"]
    rows = pq.read_table(f"{result.path}/rows.parquet").to_pylist()
    assert {r["completion"] for r in rows} == {"SEARCH tree\nDONE"} and rows[0]["score_judge"] == 0.8
    assert result.manifest["parameters"]["judge_model"] == "grader"
