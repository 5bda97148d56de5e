# Run: .venv/bin/python -m pytest tests/unit/test_branch_restore.py
"""Restore (issue 19, item 1): a stored episode's game and memory at every step equal the live ones; a corrupted
action log is caught at the first observation it changes; bad input is one line naming the fix, nothing written."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from automem.branch import RestoreError, memory_at, restore
from automem.llm import ScriptedChatModel
from automem.llm.fake import RecordedCall, phase_of
from automem.llm.protocol import DEFAULT_SAMPLING
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.scaffold import load
from automem.trajectory import EpisodeWriter, Storage, write_manifest
from automem.trajectory import load as load_store
from pipelines import branch as branch_cli

RUN = "r1"


def folder(root: Path) -> dict[str, str]:
    """Every file under ``root``, by its name relative to it."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


class LiveMemory(ScriptedChatModel):
    """A scripted agent that varies its memory writes by step (a failing op among them) and plays ``actions``;
    it snapshots the live memory folder when each step begins (its first LOG request, before that turn's ops)."""

    def __init__(self, actions: list[str], files: list[str]) -> None:
        super().__init__(self.reply)
        self.actions = actions
        self.files = files
        self.root: Path | None = None
        self.live: list[dict[str, str]] = []  # the memory when step t began, at index t
        self.acted = 0

    def reply(self, call: RecordedCall) -> str:
        phase = phase_of(call)
        t = len(self.live) - 1
        a, b = self.files[0], self.files[1]
        if phase == "action":
            self.acted += 1
            return self.actions[t % len(self.actions)]
        if phase == "plan":
            return "SEARCH step *\nDONE"
        if len(call.messages) > 2:  # the second LOG turn of a step
            return f"APPEND {b} second turn of step {t}\nDONE" if t % 2 else "DONE"
        return [
            f"APPEND {a} step {t} seen\nUPSERT state.md pos step {t}\nDONE",  # UPSERT fails until state.md exists
            f"WRITE state.md pos: step {t}\nAPPEND extra.md step {t} new file\nDONE",
            f"REPLACE {a} seen noted\nUPSERT state.md pos step {t}\nDONE",
            "DONE",
        ][t % 4]

    async def chat(self, messages, **kw):
        if len(messages) == 2 and phase_of(RecordedCall(messages, "", DEFAULT_SAMPLING, None)) == "log":
            assert self.root is not None
            self.live.append(folder(self.root))
        return await super().chat(messages, **kw)


def record(root: Path, env_id: str, seed: int, actions: list[str], steps: int) -> tuple[str, LiveMemory]:
    """Play and commit one episode with the rollout's runner (no Ray); its id and the live memory per step."""
    family = env_id.split("-")[0]
    sc = load(f"{family}-v0")
    sc = sc.model_copy(update={"turns": sc.turns.model_copy(update={"log_turns": 2})})
    job = make_jobs(
        run_id=RUN,
        env_id=env_id,
        episodes=1,
        seeds=[seed],
        scaffold=sc,
        memory_model="m",
        action_model="m",
        max_steps=steps,
    )[0]
    client = LiveMemory(actions, [f.name for f in sc.files])
    runner = EpisodeRunner(RunnerConfig(endpoint="http://unused", storage_root=str(root)), client)
    client.root = Path(runner.memory_base) / f"{job.run_id}-{job.episode_id}-a{job.attempt}"
    try:
        outcome = asyncio.run(runner.run(job))
    finally:
        asyncio.run(runner.close())
    assert outcome.steps == steps and len(client.live) == steps
    return job.episode_id, client


EPISODES = {
    "crafter": ("crafter-v0", 0, ["move west", "move north", "do", "move east", "move south", "noop"], 8),
    "minihack": ("minihack-corridor-r3-v0", 1, ["north", "east", "south", "west", "search", "east"], 8),
    # Eats the Knight's apple through its dynamic ``letter g`` action (tests/unit/test_nethack_letter_actions.py).
    "nethack": ("nethack-v0", 4, ["eat", "letter g", "search", "west", "north", "east", "search", "wait"], 8),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    out = {}
    for name, (env_id, seed, actions, steps) in EPISODES.items():
        out[name] = record(root, env_id, seed, actions, steps)
    write_manifest(Storage(str(root)), RUN, {"env_id": "mixed"})
    return root, out


def stored_observations(root: Path, episode: str) -> list[str]:
    steps = load_store(str(root), ("steps",), run_id=RUN)["steps"].to_pylist()
    rows = sorted((r["step"], r["observation"]) for r in steps if r["episode_id"] == episode)
    return [obs for _, obs in rows]


@pytest.mark.parametrize("name", list(EPISODES))
def test_restore_at_every_step_gives_the_stored_observation_and_the_live_memory(store, tmp_path, name):
    root, episodes = store
    episode, live = episodes[name]
    observations = stored_observations(root, episode)
    assert len({json.dumps(m, sort_keys=True) for m in live.live}) >= 4, (
        "the memory must change over the steps"
    )
    for t in range(len(observations)):
        out = tmp_path / f"mem-{t}"
        r = restore(str(root), RUN, episode, t, memory_dir=out)
        try:
            assert r.observation == observations[t]
            assert r.memory == live.live[t], f"step {t}"
            assert folder(out) == live.live[t], f"step {t}"
            assert (r.attempt, r.step, r.record["env_id"]) == (1, t, EPISODES[name][0])
            assert len(r.actions) == t
            if t == len(observations) - 1:  # the live env plays on: step t's recorded action is accepted
                r.env.step(live.actions[t % len(live.actions)])
        finally:
            r.close()
    assert not list(tmp_path.glob(".tmp-*")), "no temporary folder is left behind"


def test_memory_at_applies_the_initial_files_and_the_steps_before(store):
    root, episodes = store
    episode, live = episodes["crafter"]
    ops = load_store(str(root), ("memory_ops",), run_id=RUN)["memory_ops"]
    ops = ops.filter(pa.compute.equal(ops["episode_id"], episode))
    assert (
        memory_at(ops, 0)
        == live.live[0]
        == {f.name: f.initial for f in load("crafter-v0").files if f.initial}
    )
    assert memory_at(ops, 3) == live.live[3]


def corrupt(root: Path, dest: Path, episode: str, step: int, action: str) -> Path:
    """A copy of the store whose steps file records ``action`` at ``step``."""
    shutil.copytree(root, dest)
    path = dest / "tables" / "steps" / RUN / f"{episode}.parquet"
    table = pq.read_table(path)
    actions = table["action"].to_pylist()
    assert actions[step] != action
    actions[step] = action
    table = table.set_column(table.schema.get_field_index("action"), "action", pa.array(actions, pa.string()))
    pq.write_table(table, path)
    return dest


@pytest.mark.parametrize(("name", "k", "action"), [("crafter", 3, "move west"), ("nethack", 3, "east")])
def test_a_corrupted_action_is_caught_at_the_first_observation_it_changes(store, tmp_path, name, k, action):
    root, episodes = store
    episode, _ = episodes[name]
    bad = corrupt(root, tmp_path / "bad", episode, k, action)
    restore(str(bad), RUN, episode, k).close()  # the actions before k are intact
    for t in (k + 1, 7):
        out = tmp_path / f"mem-{t}"
        with pytest.raises(RestoreError) as err:
            restore(str(bad), RUN, episode, t, memory_dir=out)
        msg = str(err.value)
        assert msg.startswith(
            f"step {k + 1}: the stored observation and the replayed one differ at character "
        )
        assert f"after step {k}'s action {action!r}" in msg and "other environment code" in msg
        assert "\n" not in msg
        assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(store, tmp_path):
    root, episodes = store
    episode, _ = episodes["minihack"]
    out = tmp_path / "mem"

    def error(*args, **kw) -> str:
        with pytest.raises(RestoreError) as err:
            restore(*args, memory_dir=out, **kw)
        assert not out.exists() and not list(tmp_path.glob(".tmp-*"))
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "give a step from 0 to 7" in error(str(root), RUN, episode, 8)
    assert "give a step from 0 to 7" in error(str(root), RUN, episode, -1)
    assert "committed attempt 1, not 2" in error(str(root), RUN, episode, 0, attempt=2)
    msg = error(str(root), RUN, "000009-nope", 0)
    assert "is not committed: the run has no episode of this id" in msg and "automem query" in msg
    assert "has no run 'r9'" in error(str(root), "r9", episode, 0)
    # An episode whose only attempt failed.
    EpisodeWriter(Storage(str(root)), RUN, "000001-failed", 1, {}).fail("boom")
    assert "its 1 attempt(s) failed" in error(str(root), RUN, "000001-failed", 0)
    # A store written by an older schema.
    old = tmp_path / "old"
    shutil.copytree(root, old)
    manifest = old / "runs" / RUN / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": "1"}))
    msg = error(str(old), RUN, episode, 0)
    assert "older store schema (1" in msg and "automem version that wrote it" in msg
    # A folder that is not empty is never written into.
    out.mkdir()
    (out / "keep.md").write_text("mine")
    with pytest.raises(RestoreError, match="not empty: give a new or empty folder"):
        restore(str(root), RUN, episode, 0, memory_dir=out)
    assert folder(out) == {"keep.md": "mine"}


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="automem")
    branch_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["branch", *argv])
    return args.func(args)


def test_the_command_writes_the_memory_and_prints_the_observation(store, tmp_path, capsys):
    root, episodes = store
    episode, live = episodes["nethack"]
    out = tmp_path / "mem"
    assert cli("restore", str(root), RUN, episode, "--at-step", "2", "--to", str(out)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(stored_observations(root, episode)[2])
    last = printed.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"restored {RUN}/{episode} (attempt 1, nethack-v0 seed 4) at step 2 of 8: ")
    assert folder(out) == live.live[2]
    # Bad input: exit status 2, one line on stderr, nothing written.
    again = tmp_path / "again"
    assert cli("restore", str(root), RUN, episode, "--at-step", "8", "--to", str(again)) == 2
    err = capsys.readouterr().err
    assert err.startswith("automem branch restore: step 8 is outside episode") and err.count("\n") == 1
    assert not again.exists()
    assert cli("restore", str(tmp_path / "none"), RUN, episode, "--at-step", "0", "--to", str(again)) == 2
    assert "does not exist" in capsys.readouterr().err and not again.exists()
    assert os.listdir(tmp_path) == ["mem"]
