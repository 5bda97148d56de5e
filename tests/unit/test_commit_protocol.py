# Run: .venv/bin/python -m pytest tests/unit/test_commit_protocol.py
"""The store's atomic steps on a local folder: the run lease, attempt claims, the commit point, repair.

Races are real: several processes (or threads) released together by a barrier, many times over. Interrupts are
injected at every storage call of a commit in turn, as a Ctrl-C or a kill -9 there would stop it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from automem.agent import Agent, ModelRoute
from automem.agent.events import StepEvent
from automem.envs.fake import CorridorEnv
from automem.llm import ScriptedChatModel
from automem.llm.fake import step_script
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.rollout.resume import next_attempts
from automem.scaffold import load
from automem.trajectory import AlreadyCommitted, EpisodeWriter, Storage, committed_episode_ids, repair
from automem.trajectory import load as load_store
from automem.trajectory.runs import LeaseLost, RunBusy, RunLease
from automem.trajectory.schemas import TABLES
from automem.trajectory.writer import INTERRUPTED, PUBLISHED, AttemptTaken

RUN = "run1"
META = {
    "env_id": "corridor-v0",
    "seed": 0,
    "scaffold_id": "crafter-v0",
    "scaffold_content_id": "x",
    "memory_model": "m",
    "action_model": "m",
}
TIMESTAMPS = ("started_at", "committed_at", "finished_at")


# -- helpers ----------------------------------------------------------------------------------------------------


def play_once(steps: int) -> tuple[list, object]:
    """Play one episode with a scripted model; its events and end, to be written as often as a test likes."""
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    agent = Agent(sc, memory=ModelRoute(ScriptedChatModel(step_script("right", "moved")), "m"))
    events: list = []
    with tempfile.TemporaryDirectory() as tmp:
        end = asyncio.run(
            agent.run_episode(
                CorridorEnv(length=50, max_steps=1000),
                seed=0,
                episode_id="e",
                memory_root=tmp + "/m",
                max_steps=steps,
                on_event=events.append,
            )
        )
    return events, end


@pytest.fixture(scope="module")
def played():
    return play_once(10)


def staged_writer(storage, episode_id, attempt, played, *, flush_rows=8, claim=True):
    """A writer that has streamed the episode's rows to staging (in parts), ready to commit."""
    events, _ = played
    writer = EpisodeWriter(storage, RUN, episode_id, attempt, META, flush_rows=flush_rows)
    if claim:
        writer.claim()
    for event in events:
        writer.on_event(event)
        if isinstance(event, StepEvent) and writer.should_flush():
            writer.flush()
    return writer


def commit(storage, episode_id, attempt, played, **kw):
    writer = staged_writer(storage, episode_id, attempt, played, **kw)
    writer.commit(played[1], "sys")
    return writer


def plain(root, table) -> list[dict]:
    """Every row in ``tables/<table>/`` as a plain pyarrow dataset read sees them (no filtering by the record)."""
    folder = Path(root) / "tables" / table
    if not folder.exists():
        return []
    return ds.dataset(str(folder), format="parquet", schema=TABLES[table]).to_table().to_pylist()


def snapshot(root) -> dict[str, list[str]]:
    """The rows of every table, in a stable order, without the wall-clock timestamps."""
    out = {}
    for table in TABLES:
        rows = [{k: v for k, v in r.items() if k not in TIMESTAMPS} for r in plain(root, table)]
        out[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


class Killed(KeyboardInterrupt):
    """The process stops here (a Ctrl-C, or the state a kill -9 leaves: the call never happens)."""


class CutStore(Storage):
    """A local store that stops the process at its ``at``-th write, publish or delete once armed."""

    def __init__(self, root):
        super().__init__(str(root), retry_for_s=0)
        self.at: int | None = None
        self.calls: list[tuple[str, str]] = []

    def arm(self, at: int | None) -> None:
        self.at, self.calls = at, []

    def _tick(self, what: str, path: str) -> None:
        if self.at is None:
            return
        if len(self.calls) == self.at:
            raise Killed(f"killed before {what} {path}")
        self.calls.append((what, path))

    def write_bytes(self, path, data):
        self._tick("write", path)
        super().write_bytes(path, data)

    def create_exclusive(self, path, data):
        self._tick("create", path)
        return super().create_exclusive(path, data)

    def publish(self, src, dst):
        self._tick("publish", dst)
        super().publish(src, dst)

    def concat_parquet(self, dst, schema, parts, **kw):
        self._tick("concat", dst)
        super().concat_parquet(dst, schema, parts, **kw)

    def delete_file(self, path):
        self._tick("delete", path)
        super().delete_file(path)

    def delete_dir(self, path):
        self._tick("delete_dir", path)
        super().delete_dir(path)


def as_attempt(rows: list[str], episode_id: str, attempt: int) -> list[str]:
    """``snapshot`` rows with ``episode_id``'s attempt 1 renumbered ``attempt``."""
    mark = f'"episode_id": "{episode_id}"'
    return sorted(r.replace('"attempt": 1,', f'"attempt": {attempt},') if mark in r else r for r in rows)


def rows_of(snap: dict[str, list[str]], table: str, episode_id: str) -> list[str]:
    """The rows of one episode in a ``snapshot``'s table."""
    return [r for r in snap[table] if f'"episode_id": "{episode_id}"' in r]


# -- the run lease ----------------------------------------------------------------------------------------------


class Remote(Storage):
    """A local store with a remote store's latency (20 ms a call): the gap between a read and a write is as wide
    as over a network."""

    def exists(self, path):
        time.sleep(0.02)
        return super().exists(path)

    def read_bytes(self, path):
        time.sleep(0.02)
        return super().read_bytes(path)

    def list_files(self, path, **kw):
        time.sleep(0.02)
        return super().list_files(path, **kw)

    def write_bytes(self, path, data):
        time.sleep(0.02)
        super().write_bytes(path, data)

    def create_exclusive(self, path, data):
        time.sleep(0.02)
        return super().create_exclusive(path, data)


def _contend(root, runs, barrier, results, env):
    """One driver process: for each run, wait for the others, then try to take the run's lease."""
    os.environ.update(env)  # the fork server may have started before the caller's S3 settings
    storage = Remote(root)
    for run in runs:
        barrier.wait()
        lease = RunLease(storage, run)
        try:
            lease.acquire()
            results.put((run, lease.owner))
        except RunBusy:
            results.put((run, None))


def race_for_leases(root, runs, processes=4) -> dict[str, list[str]]:
    """Start ``processes`` drivers at once on each run (a folder or ``s3://``); the winners of each."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # children fork from one process that has imported this module
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_contend, args=(root, runs, barrier, results, dict(os.environ)))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    winners: dict[str, list[str]] = {run: [] for run in runs}
    for _ in range(processes * len(runs)):
        run, owner = results.get(timeout=120)
        if owner is not None:
            winners[run].append(owner)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return winners


def put_stale_lease(storage, run):
    """A lease held by another host's driver whose last heartbeat is an hour old (it died)."""
    body = {"owner": "otherhost:1:dead", "generation": 1, "heartbeat": time.time() - 3600, "released": False}
    storage.write_bytes(storage.path("runs", run, "lease", "00000001.json"), json.dumps(body).encode())


def test_drivers_taking_a_run_at_once_exactly_one_wins(tmp_path):
    runs = [f"fresh{i}" for i in range(6)] + [f"stale{i}" for i in range(6)]
    storage = Storage(str(tmp_path))
    for run in runs[6:]:
        put_stale_lease(storage, run)
    winners = race_for_leases(str(tmp_path), runs)
    assert {run: len(w) for run, w in winners.items()} == dict.fromkeys(runs, 1)
    for run, [owner] in winners.items():
        assert RunLease(storage, run).holder()[0] == owner


def test_an_overtaken_driver_learns_it_at_its_next_renew(tmp_path):
    storage = Storage(str(tmp_path))
    first, second = RunLease(storage, RUN), RunLease(storage, RUN)
    first.acquire()
    with pytest.raises(RunBusy, match="in use by driver"):
        second.acquire()
    second.acquire(force=True)
    with pytest.raises(LeaseLost, match="took the run over"):
        first.renew(every_s=0)
    first.release()  # not its lease any more: changes nothing
    assert storage.exists(storage.path("runs", RUN, "lease", "00000002.json"))
    assert RunLease(storage, RUN).holder()[0] == second.owner
    second.renew(every_s=0)
    second.release()
    assert second.holder() is None
    third = RunLease(storage, RUN)
    third.acquire()  # a released lease is free: the next generation
    assert third.generation == 3


# -- attempt claims ---------------------------------------------------------------------------------------------


def test_an_attempt_number_has_one_writer_ever(tmp_path, played):
    storage = Storage(str(tmp_path))
    for trial in range(20):  # writers of the same episode and attempt, racing on threads
        barrier = threading.Barrier(4)
        won = []

        def go(ep=f"ep{trial}", barrier=barrier, won=won):
            writer = EpisodeWriter(storage, RUN, ep, 1, META)
            barrier.wait()
            try:
                writer.claim()
                won.append(writer)
            except AttemptTaken:
                pass

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1
    # Once an attempt has finished (its attempts row written, its staging dropped), its number stays used.
    commit(storage, "done", 1, played)
    assert storage.list_files(storage.path("_staging", RUN, "done")) == []
    with pytest.raises(AttemptTaken, match="has run already"):
        EpisodeWriter(storage, RUN, "done", 1, META).claim()
    # A resume counts claimed numbers, even of attempts that wrote nothing else.
    EpisodeWriter(storage, RUN, "quiet", 4, META).claim()
    assert next_attempts(storage, RUN) == {**{f"ep{t}": 2 for t in range(20)}, "done": 2, "quiet": 5}


def test_a_runner_whose_attempt_is_taken_leaves_the_holders_files_alone(tmp_path):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    job = make_jobs(
        run_id=RUN,
        env_id="corridor-v0",
        episodes=1,
        seeds=[0],
        scaffold=sc,
        memory_model="m",
        action_model="m",
        max_steps=3,
        env_kwargs={"length": 100, "max_steps": 100},
    )[0]
    storage = Storage(str(tmp_path))
    holder = EpisodeWriter(storage, RUN, job.episode_id, 1, META)
    holder.claim()
    runner = EpisodeRunner(
        RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path)),
        ScriptedChatModel(step_script("right", "x")),
    )
    with pytest.raises(AttemptTaken):
        asyncio.run(runner.run(job))
    assert storage.exists(holder.claim_path())
    assert load_store(str(tmp_path), tables=("attempts",))["attempts"].num_rows == 0
    summary = asyncio.run(runner.run(job.retry()))  # the scheduler's retry: the next number
    assert summary.attempt == 2 and summary.steps == 3


# -- the commit point -------------------------------------------------------------------------------------------


class GateAtTables(Storage):
    """Holds every writer at its first write into ``tables/`` until all of them are there (the widest race)."""

    def __init__(self, root, barrier):
        super().__init__(root)
        self.barrier = barrier
        self.passed: set[int] = set()

    def _gate(self, path):
        me = threading.get_ident()
        if "/tables/" in path and me not in self.passed:
            self.passed.add(me)
            try:
                self.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass

    def write_bytes(self, path, data):
        self._gate(path)
        super().write_bytes(path, data)

    def create_exclusive(self, path, data):
        self._gate(path)
        return super().create_exclusive(path, data)

    def publish(self, src, dst):
        self._gate(dst)
        super().publish(src, dst)

    def concat_parquet(self, dst, schema, parts, **kw):
        self._gate(dst)
        super().concat_parquet(dst, schema, parts, **kw)


def test_attempts_racing_to_commit_one_episode_commit_exactly_one(tmp_path, played):
    short = play_once(4)
    for trial in range(6):
        root = str(tmp_path / f"t{trial}")
        storage = GateAtTables(root, threading.Barrier(3))
        # Three plays of one episode (different lengths, so a mix would show), all done, committing at once.
        writers = [staged_writer(storage, "ep", a, p) for a, p in ((1, played), (2, short), (3, played))]
        outcome: dict[int, str] = {}

        def go(w, outcome=outcome):
            try:
                w.commit((played if w.attempt != 2 else short)[1], "sys")
                outcome[w.attempt] = "committed"
            except AlreadyCommitted as exc:
                outcome[w.attempt] = f"lost to {exc.attempt}"

        threads = [threading.Thread(target=go, args=(w,)) for w in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        [winner] = [a for a, o in outcome.items() if o == "committed"]
        assert all(o == f"lost to {winner}" for a, o in outcome.items() if a != winner), outcome
        [record] = plain(root, "episodes")
        assert record["attempt"] == winner
        for table in PUBLISHED:
            assert {r["attempt"] for r in plain(root, table)} == {winner}, table
        assert len(plain(root, "steps")) == record["steps"]
        assert len(plain(root, "turns")) == record["turns"]
        assert Storage(root).list_files(Storage(root).path("_staging")) == []  # losers dropped theirs


def test_a_commit_refuses_staged_rows_of_another_attempt(tmp_path, played):
    from automem.trajectory.writer import CommitRefused

    storage = Storage(str(tmp_path))
    writer = staged_writer(storage, "ep", 2, played)
    # A part of attempt 1 in attempt 2's staging (as two plays sharing a folder would leave).
    other = staged_writer(Storage(str(tmp_path / "elsewhere")), "ep", 1, played)
    src = other.storage.path("_staging", RUN, "ep", "a1", "steps", "p00000.parquet")
    storage.write_bytes(writer._staged("steps", 0), other.storage.read_bytes(src))
    with pytest.raises(CommitRefused, match="attempt"):
        writer.commit(played[1], "sys")
    assert committed_episode_ids(storage, RUN) == set()
    assert plain(str(tmp_path), "steps") == []


# -- interrupts and repair --------------------------------------------------------------------------------------


def test_an_interrupt_anywhere_in_a_commit_never_shows_uncommitted_rows_and_repair_completes_it(
    tmp_path, played
):
    base = tmp_path / "base"  # another episode, committed before
    commit(Storage(str(base)), "ep-ok", 1, played)
    reference = tmp_path / "ref"  # what a clean commit leaves
    shutil.copytree(base, reference)
    commit(Storage(str(reference)), "ep-cut", 1, played, flush_rows=16)
    expected = snapshot(reference)
    probe = CutStore(tmp_path / "probe")
    writer = staged_writer(probe, "ep-cut", 1, played, flush_rows=16)
    probe.arm(10**6)
    writer.commit(played[1], "sys")
    calls = list(probe.calls)
    assert [c[0] for c in calls].count("create") == 1  # the record: the one commit point
    outcomes = []
    for at in range(len(calls) + 1):  # killed before call ``at`` (after the last: not killed)
        root = tmp_path / f"cut{at}"
        shutil.copytree(base, root)
        store = CutStore(root)
        writer = staged_writer(store, "ep-cut", 1, played, flush_rows=16)
        store.arm(at)
        try:
            writer.commit(played[1], "sys")
        except Killed:
            pass
        where = f"killed before call {at}: {calls[at : at + 1]}"
        seen = snapshot(root)
        committed = bool(rows_of(seen, "episodes", "ep-cut"))
        outcomes.append(committed)
        for (
            table
        ) in PUBLISHED:  # every table shows all of the episode's rows or none, and none before the record
            n = len(rows_of(seen, table, "ep-cut"))
            assert n in ((0, len(rows_of(expected, table, "ep-cut"))) if committed else (0,)), (where, table)
        st = Storage(str(root))
        repair(st, RUN)
        assert st.list_files(st.path("_staging"), hidden=True) == [], where
        if committed:
            assert snapshot(root) == expected, where
            continue
        [failed] = rows_of(snapshot(root), "attempts", "ep-cut")
        assert '"attempt": 1,' in failed and INTERRUPTED in failed, where
        commit(st, "ep-cut", 2, played)  # the resume's retry, under the next number
        got = snapshot(root)
        for table in ("episodes", *PUBLISHED):
            assert got[table] == as_attempt(expected[table], "ep-cut", 2), (where, table)
    assert outcomes == [False] * (calls.index(next(c for c in calls if c[0] == "create")) + 1) + [True] * (
        len(calls) - [c[0] for c in calls].index("create")
    )


def test_a_repair_interrupted_anywhere_is_completed_by_the_next(tmp_path, played):
    reference = tmp_path / "ref"
    commit(Storage(str(reference)), "ep", 1, played)
    expected = snapshot(reference)
    base = tmp_path / "base"  # killed right after the commit point, plus an attempt killed while playing
    store = CutStore(base)
    writer = staged_writer(store, "ep", 1, played)
    store.arm(6)
    with pytest.raises(Killed):
        writer.commit(played[1], "sys")
    staged_writer(Storage(str(base)), "ep2", 1, played)
    probe = CutStore(tmp_path / "probe")
    shutil.copytree(base, tmp_path / "probe")
    probe.arm(10**6)
    repair(probe, RUN)
    for at in range(len(probe.calls)):
        root = tmp_path / f"cut{at}"
        shutil.copytree(base, root)
        store = CutStore(root)
        store.arm(at)
        with pytest.raises(Killed):
            repair(store, RUN)
        repair(Storage(str(root)), RUN)
        got = snapshot(root)
        [failed] = rows_of(got, "attempts", "ep2")
        assert INTERRUPTED in failed
        got["attempts"].remove(failed)
        assert got == expected, f"repair killed before call {at}: {probe.calls[at]}"


def test_repair_restores_a_missing_ok_row_and_records_killed_attempts(tmp_path, played):
    storage = Storage(str(tmp_path))
    commit(storage, "ep-1", 1, played)
    storage.delete_file(storage.path("tables", "attempts", RUN, "ep-1-a1.parquet"))  # lost (older versions)
    killed = staged_writer(storage, "ep-2", 3, played)  # streamed parts, then its driver was killed
    claimed = EpisodeWriter(storage, RUN, "ep-3", 1, {**META, "worker": "host:42"})
    claimed.claim()  # killed before it wrote a row
    counts = repair(storage, RUN)
    assert counts["ok_rows"] == 1 and counts["interrupted"] == 2
    rows = {(r["episode_id"], r["attempt"]): r for r in plain(str(tmp_path), "attempts")}
    assert rows[("ep-1", 1)]["status"] == "ok"
    assert rows[("ep-2", 3)]["status"] == "failed" and rows[("ep-2", 3)]["error"] == INTERRUPTED
    assert rows[("ep-3", 1)]["worker"] == "host:42"
    assert abs((rows[("ep-2", 3)]["started_at"] - killed.started_at).total_seconds()) < 0.01  # from its claim
    assert storage.list_files(storage.path("_staging"), hidden=True) == []
    assert next_attempts(storage, RUN) == {"ep-1": 2, "ep-2": 4, "ep-3": 2}
    assert repair(storage, RUN) == dict.fromkeys(counts, 0)  # nothing left to do


def test_repair_rolls_forward_only_the_play_whose_record_is_committed(tmp_path, played):
    store = CutStore(tmp_path)
    writer = staged_writer(store, "ep", 1, played)
    store.arm(6)  # killed right after the commit point: the record exists, nothing is published yet
    with pytest.raises(Killed):
        writer.commit(played[1], "sys")
    assert store.calls[-1][0] == "create"
    storage = Storage(str(tmp_path))
    record = storage.path("_staging", RUN, "ep", "a1", "final", "episodes.parquet")
    good = storage.read_bytes(record)
    other = staged_writer(Storage(str(tmp_path / "other")), "ep", 1, play_once(3))
    other.commit(play_once(3)[1], "sys")  # another play under the same key, elsewhere
    storage.write_bytes(record, other.storage.read_bytes(other._committed("episodes")))
    assert repair(storage, RUN)["incomplete"] == 1
    assert plain(str(tmp_path), "steps") == []  # nothing of the wrong play was published
    storage.write_bytes(record, good)
    assert repair(storage, RUN)["rolled_forward"] == 1
    assert len(plain(str(tmp_path), "steps")) == 10


def test_fail_of_an_attempt_that_committed_rolls_it_forward(tmp_path, played):
    # Its runner died after the commit point: the scheduler fails the attempt, which finishes the commit.
    root = tmp_path
    store = CutStore(root)
    writer = staged_writer(store, "ep", 1, played)
    store.arm(8)  # record created, some files published
    with pytest.raises(Killed):
        writer.commit(played[1], "sys")
    assert committed_episode_ids(Storage(str(root)), RUN) == {"ep"}
    EpisodeWriter(Storage(str(root)), RUN, "ep", 1, {}).fail("runner died")
    tables = load_store(str(root))
    assert tables["steps"].num_rows == tables["episodes"].column("steps")[0].as_py() == 10
    assert [(r["attempt"], r["status"]) for r in plain(str(root), "attempts")] == [(1, "ok")]
