# Run: .venv/bin/python -m pytest tests/unit/test_trajectory_store.py
"""The trajectory store on a local folder: streaming parts, commit visibility, retries, replay from Parquet.

The commit protocol's races and interrupts are tested in test_commit_protocol.py.
"""

from __future__ import annotations

import asyncio
import json

import pyarrow.dataset as ds
import pytest

from automem.agent import Agent, ModelRoute
from automem.envs.fake import CorridorEnv
from automem.llm import ScriptedChatModel
from automem.llm.fake import step_script
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


script = step_script("right", "moved once more")


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


def test_files_of_uncommitted_episodes_in_tables_are_removed_by_repair_or_replaced(tmp_path):
    # Older versions published an episode's files before its record, so a crash could leave them in tables/.
    storage = Storage(str(tmp_path))
    play(storage, "ep-c", attempt=1, steps=12)
    storage.delete_file(storage.path("tables", "episodes", "run1", "ep-c.parquet"))
    assert ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").count_rows() == 12
    assert load_store(str(tmp_path))["steps"].num_rows == 0  # load() never shows uncommitted rows
    removed = repair(storage, "run1")
    assert removed["orphan_files"] >= 3
    assert ds.dataset(str(tmp_path / "tables" / "steps"), format="parquet").count_rows() == 0
    # A later attempt replaces whatever an earlier one left there.
    play(storage, "ep-d", attempt=1, steps=12)
    storage.delete_file(storage.path("tables", "episodes", "run1", "ep-d.parquet"))
    play(storage, "ep-d", attempt=2, steps=3)
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


def test_a_committed_episode_is_never_committed_again(tmp_path):
    from automem.trajectory import AlreadyCommitted

    storage = Storage(str(tmp_path))
    play(storage, "ep-once", attempt=1, steps=6)
    with pytest.raises(AlreadyCommitted) as info:
        play(storage, "ep-once", attempt=2, steps=3)
    assert info.value.attempt == 1
    tables = load_store(str(tmp_path))
    assert tables["episodes"].column("attempt").to_pylist() == [1]
    assert tables["steps"].num_rows == 6 and set(tables["steps"].column("attempt").to_pylist()) == {1}
    # Committing the same attempt again (a retried bookkeeping step) is harmless.
    w = EpisodeWriter(storage, "run1", "ep-once", 1, META)
    assert w.committed_attempt() == 1
    # A long losing attempt (its rows streamed to staging) leaves no staged parts behind.
    late, end = play(storage, "ep-once", attempt=3, steps=30, commit=False)
    assert storage.list_files(late.staging_dir())
    with pytest.raises(AlreadyCommitted):
        late.commit(end, "sys")
    assert storage.list_files(late.staging_dir()) == []


def test_long_episodes_commit_one_file_per_table(tmp_path):
    storage = Storage(str(tmp_path))
    writer, _ = play(storage, "ep-many", steps=40, flush_rows=8)
    assert writer._parts["steps"] > 3  # streamed in many parts ...
    for table in ("steps", "turns", "memory_ops", "memory_files", "episodes"):
        files = storage.list_files(storage.path("tables", table))
        assert [f.rsplit("/", 1)[-1] for f in files] == ["ep-many.parquet"]  # ... committed as one file
    assert load_store(str(tmp_path))["steps"].column("step").to_pylist() == list(range(40))


def test_local_writes_are_atomic_and_repair_removes_cut_temporaries(tmp_path):
    from automem.trajectory.storage import TMP_PREFIX

    storage = Storage(str(tmp_path))
    play(storage, "ep-t", steps=3)
    folder = tmp_path / "tables" / "episodes" / "run1"
    (folder / f"{TMP_PREFIX}ep-u.parquet.1234").write_bytes(b"PAR1 half a file")  # a write cut by SIGKILL
    assert committed_episode_ids(storage, "run1") == {"ep-t"}  # hidden from every reader
    assert ds.dataset(str(tmp_path / "tables" / "episodes"), format="parquet").count_rows() == 1
    assert repair(storage, "run1")["temp_files"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["ep-t.parquet"]


def test_publish_is_safe_to_retry(tmp_path):
    storage = Storage(str(tmp_path))
    src, dst = storage.path("a", "x.bin"), storage.path("b", "x.bin")
    storage.write_bytes(src, b"data")
    storage.publish(src, dst)
    storage.publish(src, dst)  # the retry of a publish whose answer was lost
    assert storage.read_bytes(dst) == b"data"
    with pytest.raises(FileNotFoundError):
        storage.publish(storage.path("a", "missing"), storage.path("b", "missing"))


def test_staged_attempts_and_the_run_lease(tmp_path):
    from automem.trajectory import RunBusy, RunLease, staged_attempts

    storage = Storage(str(tmp_path))
    play(storage, "ep-s", attempt=3, steps=9, commit=False)
    assert staged_attempts(storage, "run1") == {"ep-s": 3}
    first = RunLease(storage, "run1")
    first.acquire()
    second = RunLease(storage, "run1")
    with pytest.raises(RunBusy, match="in use by driver"):
        second.acquire()
    second.acquire(force=True)
    first.stale_after_s = 0.0  # the other driver's heartbeat counts as stale from now on
    first.acquire()
    first.release()
    assert first.holder() is None


def test_the_episode_index_is_a_cache_that_never_changes_what_readers_see(tmp_path):
    from automem.trajectory import committed_keys, query
    from automem.trajectory.reader import episode_records
    from automem.trajectory.runs import write_episode_index

    root = str(tmp_path)
    storage = Storage(root)
    for e in ("ep-1", "ep-2", "ep-3"):
        play(storage, e, steps=3)
    sql = "SELECT episode_id, steps, system_prompt FROM episodes ORDER BY 1"
    before = query(root, sql).to_pylist()
    assert write_episode_index(storage, "run1") == 3
    indexed, files = episode_records(storage)
    assert indexed.num_rows == 3 and files == []  # every record comes from the one index file
    assert query(root, sql).to_pylist() == before
    # Committed after the index: read from its own file. Gone from tables/ (deleted by hand): gone for readers.
    play(storage, "ep-4", steps=2)
    storage.delete_file(storage.path("tables", "episodes", "run1", "ep-1.parquet"))
    rows = query(root, sql).to_pylist()
    assert [r["episode_id"] for r in rows] == ["ep-2", "ep-3", "ep-4"]
    assert sorted(committed_keys(storage).column("episode_id").to_pylist()) == ["ep-2", "ep-3", "ep-4"]
    assert load_store(root)["steps"].num_rows == 3 + 3 + 2
    # The index lives outside tables/: a plain read of the episodes folder sees each record once.
    assert ds.dataset(str(tmp_path / "tables" / "episodes"), format="parquet").count_rows() == 3


def test_failing_an_attempt_that_committed_changes_nothing(tmp_path):
    # A runner that committed and died before returning: the scheduler fails its in-flight attempt anyway.
    storage = Storage(str(tmp_path))
    play(storage, "ep1")
    EpisodeWriter(storage, "run1", "ep1", 1, {}).fail("runner died")
    tables = load_store(str(tmp_path), tables=("episodes", "steps", "attempts"))
    assert tables["episodes"].column("attempt").to_pylist() == [1]
    assert tables["steps"].num_rows == 6
    assert [(a["attempt"], a["status"]) for a in tables["attempts"].to_pylist()] == [(1, "ok")]


def test_reads_of_one_run_list_only_its_folders(tmp_path):
    from automem.rollout.resume import next_attempts
    from automem.trajectory.reader import table_files
    from automem.trajectory.runs import write_episode_index

    storage = Storage(str(tmp_path))
    for e in ("ep-2", "ep-1"):
        play(storage, e, steps=2)
    write_episode_index(storage, "run1")
    play(storage, "ep-0", steps=2)  # committed after the index
    other = EpisodeWriter(storage, "run2", "ep-9", 3, META)
    other.commit(play(storage, "ep-x", commit=False, steps=1)[1])
    assert [p.rsplit("/", 2)[-2] for p in table_files(storage, "steps", "run2")] == ["run2"]
    assert table_files(storage, "steps", "..") == []  # not a run id: no run's files
    everything = load_store(str(tmp_path))
    assert everything["episodes"].column("run_id").to_pylist() == ["run1"] * 3 + ["run2"]
    tables = load_store(str(tmp_path), run_id="run1", columns={"episodes": ["steps"]})
    assert tables["episodes"].column_names == ["run_id", "episode_id", "attempt", "steps"]
    assert tables["episodes"].column("episode_id").to_pylist() == ["ep-0", "ep-1", "ep-2"]
    assert set(tables["steps"].column("run_id").to_pylist()) == {"run1"} and tables["steps"].num_rows == 6
    assert load_store(str(tmp_path), ("attempts",), run_id="run2")["attempts"].column(
        "attempt"
    ).to_pylist() == [3]
    assert next_attempts(storage, "run2") == {"ep-9": 4}


def test_list_runs_names_the_runs_with_a_finished_episode(tmp_path):
    from automem.trajectory import list_runs, open_store

    storage = Storage(str(tmp_path))
    play(storage, "ep-1", steps=1)  # run1: committed
    EpisodeWriter(storage, "run2", "ep-1", 1, META).fail("crashed")  # run2: failed only
    EpisodeWriter(storage, "run3", "ep-1", 1, META).claim()  # run3: an attempt still running
    assert list_runs(str(tmp_path)) == ["run1", "run2"]
    assert list_runs(open_store(str(tmp_path))) == ["run1", "run2"]


def test_every_reader_shows_the_committed_attempts_rows_only(tmp_path):
    # A steps file that also holds rows of an earlier attempt (what a crashed commit of it could leave), and the
    # files of an episode that never committed: load and the SQL views apply the one rule (visible_files) alike.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from automem.trajectory import committed_files, query
    from automem.trajectory.reader import commits_of, committed_keys, visible_files
    from tests.support.synthetic import Step, write_episode

    root = str(tmp_path)
    write_episode(root, "run1", "ep-a", [Step("o")] * 3, attempt=2)
    write_episode(root, "run1", "ep-b", [Step("o")] * 2)
    folder = tmp_path / "tables" / "steps" / "run1"
    rows = pq.read_table(folder / "ep-a.parquet")
    stale = rows.set_column(rows.schema.get_field_index("attempt"), "attempt", pa.array([1] * 3, pa.int32()))
    pq.write_table(pa.concat_tables([stale.cast(rows.schema), rows]), folder / "ep-a.parquet")
    # Published but never committed (older versions published before the commit point).
    orphan = rows.set_column(rows.schema.get_field_index("episode_id"), "episode_id", pa.array(["ep-c"] * 3))
    pq.write_table(orphan.cast(rows.schema), folder / "ep-c.parquet")
    shown = [("ep-a", 2)] * 3 + [("ep-b", 1)] * 2
    steps = load_store(root, ("steps",))["steps"]
    assert sorted(zip(steps["episode_id"].to_pylist(), steps["attempt"].to_pylist(), strict=True)) == shown
    sql = query(root, "SELECT episode_id, attempt FROM steps ORDER BY ALL")
    assert list(zip(sql["episode_id"].to_pylist(), sql["attempt"].to_pylist(), strict=True)) == shown
    commits = commits_of(committed_keys(root))
    assert commits == {("run1", "ep-a"): 2, ("run1", "ep-b"): 1}
    files = Storage(root).list_files(Storage(root).path("tables", "steps"))
    visible = visible_files("steps", files, commits)
    assert {p.rsplit("/", 1)[-1]: a for p, a in visible.items()} == {"ep-a.parquet": 2, "ep-b.parquet": 1}
    assert committed_files(root, "steps") == sorted(visible)
    attempts = committed_files(root, "attempts")
    assert visible_files("attempts", attempts, {}) == dict.fromkeys(
        attempts
    )  # every finished attempt's record
