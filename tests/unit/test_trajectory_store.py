# Run: .venv/bin/python -m pytest tests/unit/test_trajectory_store.py
"""The trajectory store on a local folder: streaming parts, commit visibility, retries, replay from Parquet."""

from __future__ import annotations

import asyncio
import json

import pyarrow.dataset as ds
import pytest

from automem.agent import Agent, ModelRoute
from automem.envs.fake import CorridorEnv
from automem.llm import ScriptedChatModel
from automem.memory import replay
from automem.scaffold import load
from automem.trajectory import (
    EpisodeWriter,
    Storage,
    committed_episode_ids,
    dataset,
    repair,
)
from automem.trajectory import (
    load as load_store,
)

META = {
    "env_id": "corridor-v0",
    "seed": 0,
    "scaffold_id": "crafter-v0",
    "scaffold_content_id": "x",
    "memory_model": "m",
    "action_model": "m",
}


def script(call):
    last = call.messages[-1]["content"]
    if "Choose your next action" in last:
        return "right"
    if "PLAN:" in last:
        return "SEARCH moved *\nDONE"
    return "APPEND notes.md moved once more\nDONE"


def play(storage, episode_id, attempt=1, commit=True, steps=6, length=50, flush_rows=8):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    agent = Agent(sc, memory=ModelRoute(ScriptedChatModel(script), "m"))
    writer = EpisodeWriter(storage, "run1", episode_id, attempt, META, flush_rows=flush_rows)
    env = CorridorEnv(length=length, max_steps=1000)

    async def after_step():
        if writer.should_flush():
            writer.write(writer.take())

    async def go(tmp):
        return await agent.run_episode(
            env,
            seed=0,
            episode_id=episode_id,
            memory_root=tmp,
            max_steps=steps,
            on_event=writer.on_event,
            after_step=after_step,
        )

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        end = asyncio.run(go(tmp + "/m"))
    if commit:
        writer.commit(end, agent.system_prompt(env))
    return writer, end


def test_parts_stream_while_running_and_commit_makes_them_visible(tmp_path):
    storage = Storage(str(tmp_path))
    writer, end = play(storage, "ep-a", commit=False, steps=12)
    staged = storage.list_files(writer.staging_dir())
    assert len([f for f in staged if "/steps/" in f]) >= 2, "rows must stream out as parts while running"
    assert dataset(storage, "steps").count_rows() == 0  # nothing visible before commit
    assert not committed_episode_ids(storage, "run1")
    writer.commit(end, "sys")
    assert storage.list_files(writer.staging_dir()) == []
    tables = load_store(str(tmp_path))
    assert tables["episodes"].num_rows == 1
    assert tables["steps"].num_rows == 12
    assert tables["turns"].num_rows == 36
    row = tables["episodes"].to_pylist()[0]
    assert row["system_prompt"] == "sys" and row["steps"] == 12 and row["progression"] == end.progression
    # A plain pyarrow read of the committed folder gives the same rows.
    assert ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").count_rows() == 12


def test_replay_from_parquet_equals_final_memory(tmp_path):
    storage = Storage(str(tmp_path))
    _, end = play(storage, "ep-r", steps=7)
    tables = load_store(str(tmp_path))
    ops = tables["memory_ops"].sort_by([("step", "ascending"), ("turn", "ascending"), ("seq", "ascending")])
    rows = ops.to_pylist()
    assert replay(rows) == end.memory_files
    files = {r["name"]: r["content"] for r in tables["memory_files"].to_pylist()}
    assert files == end.memory_files
    # Step 3's memory has exactly the appends of steps 0..3.
    assert replay(rows, upto_step=3)["notes.md"].count("moved once more") == 4


def test_failed_attempt_is_recorded_and_retry_never_duplicates(tmp_path):
    storage = Storage(str(tmp_path))
    w1, _ = play(storage, "ep-x", attempt=1, commit=False)
    w1.fail("ConnectionError: endpoint died")
    play(storage, "ep-x", attempt=2)
    tables = load_store(str(tmp_path), tables=("episodes", "steps", "attempts"))
    assert tables["episodes"].column("attempt").to_pylist() == [2]
    assert set(tables["steps"].column("attempt").to_pylist()) == {2}
    attempts = sorted(tables["attempts"].to_pylist(), key=lambda r: r["attempt"])
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "ok")]
    assert "endpoint died" in attempts[0]["error"]


def test_crashed_commit_is_repaired_and_overwritten(tmp_path):
    storage = Storage(str(tmp_path))
    # Attempt 1 committed its parts but died before the episode row (simulate by deleting that row).
    w1, _ = play(storage, "ep-c", attempt=1, steps=12)
    storage.delete_file(storage.path("tables", "episodes", "run1", "ep-c.parquet"))
    assert ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").count_rows() == 12
    assert load_store(str(tmp_path))["steps"].num_rows == 0  # load() never shows uncommitted rows
    removed = repair(storage, "run1")
    assert removed["orphan_files"] >= 3
    assert ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").count_rows() == 0
    # A later attempt with fewer parts leaves no stale parts of the earlier one.
    play(storage, "ep-c", attempt=1, steps=12)
    storage.delete_file(storage.path("tables", "episodes", "run1", "ep-c.parquet"))
    play(storage, "ep-c", attempt=2, steps=3)
    plain = ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").to_table()
    assert plain.num_rows == 3 and set(plain.column("attempt").to_pylist()) == {2}


def test_bounded_buffer_however_long_the_episode(tmp_path):
    storage = Storage(str(tmp_path))
    writer, _ = play(storage, "ep-long", steps=60, length=1000, flush_rows=16, commit=False)
    assert writer.pending_rows() < 16 + 8  # flushed every few steps, never the whole episode


def test_ids_must_be_safe_path_components(tmp_path):
    with pytest.raises(ValueError, match="episode id"):
        EpisodeWriter(Storage(str(tmp_path)), "run1", "../evil", 1, META)


def test_info_is_json(tmp_path):
    storage = Storage(str(tmp_path))
    play(storage, "ep-i", steps=2)
    info = json.loads(load_store(str(tmp_path))["steps"].column("info_json")[0].as_py())
    assert "progression" in info and "position" in info
