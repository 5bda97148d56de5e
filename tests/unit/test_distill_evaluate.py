# Run: .venv/bin/python -m pytest tests/unit/test_distill_evaluate.py
"""Turn-level evaluation: the memory rebuilt before a turn, an answer's score, the paired bootstrap."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest

from automem.agent import Agent, ModelRoute, TurnEvent
from automem.distill.evaluate import (
    TurnScore,
    episode_ops,
    files_before,
    memory_before,
    paired_bootstrap,
    score_answer,
)
from automem.envs.fake import CorridorEnv
from automem.llm import ScriptedChatModel
from automem.llm.fake import phase_of
from automem.memory import ALL_OPS, MemoryStore, OpRecord
from automem.scaffold import load


@pytest.fixture(scope="module")
def scaffold():
    return load("crafter-v0")


# -- score_answer: known answers ---------------------------------------------------------------------------------


def test_redundant_append_counts_as_redundant(scaffold):
    memory = {"notes.md": "found water to the east\n"}
    s = score_answer(memory, "APPEND notes.md Found  water to the EAST\nDONE", scaffold)
    assert s == TurnScore(n_lines=1, n_ops=1, wellformed_share=1.0, failed={}, writes=1, redundant_writes=1)
    fresh = score_answer(memory, "APPEND notes.md a tree to the north\nDONE", scaffold)
    assert fresh.writes == 1 and fresh.redundant_writes == 0


def test_read_of_a_missing_file_is_a_failed_operation_of_its_kind(scaffold):
    s = score_answer({"notes.md": "x\n"}, "READ nothing.md\nDONE", scaffold)
    assert s.failed == {"missing": 1} and s.n_failed == 1
    assert s.n_ops == 1 and s.wellformed_share == 1.0  # well-formed, refused by the memory


def test_prose_has_no_operation(scaffold):
    s = score_answer({}, "Sure! I will remember that there is water.\nIt is to the east.", scaffold)
    assert s.n_ops == 0 and s.wellformed_share == 0.0 and s.n_lines == 2
    assert s.failed == {"parse": 2} and s.writes == 0
    empty = score_answer({}, "", scaffold)
    assert empty.n_lines == empty.n_ops == 0 and empty.wellformed_share == 0.0


def test_repeated_operations_and_mixed_lines(scaffold):
    text = "APPEND notes.md saw a cow\nI think that is good\nAPPEND notes.md saw a cow\nREAD notes.md\nDONE\nmore"
    s = score_answer({}, text, scaffold)
    assert s.n_lines == 4 and s.n_ops == 3 and s.wellformed_share == 0.75  # nothing after DONE is read
    assert s.repeated_ops == 1 and s.writes == 2 and s.redundant_writes == 1
    assert s.failed == {"parse": 1}


def test_plan_may_only_read_and_the_memory_is_never_changed(scaffold, tmp_path):
    store = MemoryStore.open_dir(tmp_path / "mem")
    store.run_op("WRITE", ["notes.md", "a\nb"])
    s = score_answer(store, "SEARCH b notes.md\nAPPEND notes.md c\nDONE", scaffold, phase="plan")
    assert s.n_ops == 1 and s.failed == {"read_only": 1} and s.writes == 0
    assert store.backend.read("notes.md") == "a\nb\n"
    memory = {"notes.md": "a\n"}
    score_answer(memory, "WRITE notes.md z\nDONE", scaffold)
    assert memory == {"notes.md": "a\n"}


def test_quotas_and_enabled_operations_come_from_the_scaffold(scaffold):
    s = score_answer({}, "DELETE notes.md\nDONE", scaffold)  # crafter-v0 does not enable DELETE
    assert s.failed == {"disabled": 1} and s.n_ops == 0
    tight = scaffold.model_copy(update={"quotas": scaffold.quotas.model_copy(update={"max_ops_per_turn": 1})})
    s = score_answer({}, "APPEND a.md x\nAPPEND b.md y\nDONE", tight)
    assert s.failed == {"limit": 1} and s.n_ops == 2 and s.writes == 1


# -- memory_before: equal to the live memory at every turn ------------------------------------------------------


def _snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuilt_memory_equals_the_live_one_before_every_turn(tmp_path):
    root = tmp_path / "mem"
    seen: list[dict[str, str]] = []  # the live memory when each memory turn was asked for
    n = {"log": 0}

    def script(call) -> str:
        phase = phase_of(call)
        if phase == "action":
            return "right"
        seen.append(_snapshot(root))
        if phase == "plan":
            return "SEARCH step notes.md\nTAIL notes.md 2\nDONE"
        k = n["log"] = n["log"] + 1
        return [
            f"APPEND notes.md step {k}\nUPSERT state.md pos {k}\nDONE",
            f"WRITE scratch.md temp {k}\nREAD missing.md\nDONE",
            f"DELETE scratch.md\nAPPEND notes.md step {k - 2}\nDONE",
            "REPLACE notes.md step stage\nCREATE goals.md\nDONE",
        ][k % 4]

    base = load("crafter-v0")
    sc = base.model_copy(
        update={
            "operations": ALL_OPS,
            "constrained": False,
            "default_action": "wait",
            "turns": base.turns.model_copy(update={"log_turns": 2}),
        }
    )
    events: list = []
    asyncio.run(
        Agent(sc, memory=ModelRoute(ScriptedChatModel(script), "base")).run_episode(
            CorridorEnv(length=30, max_steps=30),
            seed=0,
            episode_id="ep1",
            memory_root=root,
            max_steps=6,
            on_event=events.append,
        )
    )
    turns = [e for e in events if isinstance(e, TurnEvent) and e.phase != "action"]
    records = [e for e in events if isinstance(e, OpRecord)]
    assert len(turns) == len(seen) > 12 and {t.turn for t in turns} == {0, 1}
    assert any(not r.ok for r in records) and any(r.op == "DELETE" and r.ok for r in records)
    distinct = set()
    for t, live in zip(turns, seen, strict=True):
        rebuilt = files_before(records, t.step, t.phase, t.turn)
        assert rebuilt == live, (t.step, t.phase, t.turn)
        distinct.add(tuple(sorted(rebuilt.items())))
        store = memory_before(records, t.step, t.phase, t.turn, quotas=sc.quotas)
        assert dict(store.backend.files) == live and store.quotas == sc.quotas
    assert len(distinct) > 6  # the memory really changed between turns

    # The same from rows of a memory_ops table, in any order, mixed with another episode's.
    rows = [r.to_dict() | {"run_id": "r", "episode_id": "ep1", "attempt": 1} for r in records]
    other = [r | {"episode_id": "ep2"} for r in rows[:5]]
    table = pa.Table.from_pylist(list(reversed(rows)) + other)
    ops = episode_ops({"memory_ops": table}, "r", "ep1", 1)
    assert len(ops) == len(rows)
    last = turns[-1]
    assert files_before(ops, last.step, last.phase, last.turn) == seen[-1]


def test_files_before_refuses_an_unknown_phase():
    with pytest.raises(ValueError, match="unknown phase"):
        files_before([], 0, "act", 0)


# -- paired_bootstrap ------------------------------------------------------------------------------------------


def test_bootstrap_of_a_constant_shift_is_exact():
    a = np.arange(20, dtype=float)
    diff, lo, hi = paired_bootstrap(a, a + 1)
    assert (diff, lo, hi) == pytest.approx((1.0, 1.0, 1.0))


def test_bootstrap_interval_holds_the_true_mean_on_noisy_data():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 400)
    b = a + 0.5 + rng.normal(0.0, 1.0, 400)
    diff, lo, hi = paired_bootstrap(a, b, n=2000, seed=0)
    assert lo < 0.5 < hi and lo < diff < hi and hi - lo < 0.4
    assert paired_bootstrap(a, b, seed=0) == (diff, lo, hi)  # deterministic


def test_bootstrap_refuses_unpaired_input():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def _read_row(step: int, op: str, args: list[str]) -> dict:
    return {"step": step, "phase": "plan", "turn": 0, "seq": 0, "op": op, "args": args, "ok": True} | {
        "read_only": True,
        "error_kind": None,
        "output_chars": 10,
    }


def test_writes_read_later_counts_the_answers_writes_a_later_read_returned():
    scaffold = load("crafter-v0")
    memory = {"notes.md": "old line\n"}
    later = [_read_row(5, "SEARCH", ["tree", "notes.md"]), _read_row(6, "SEARCH", ["old", "notes.md"])]
    kept = score_answer(memory, "APPEND notes.md tree to the north\nDONE", scaffold, later=later, step=2)
    assert kept.writes_read_later == 1
    unread = score_answer(memory, "APPEND notes.md water to the east\nDONE", scaffold, later=later, step=2)
    assert unread.writes_read_later == 0  # only "old line" (not the answer's) was read back
    assert score_answer(memory, "APPEND notes.md tree\nDONE", scaffold).writes_read_later is None
