# Run: .venv/bin/python -m pytest tests/unit/test_rollout_runner.py
"""The episode runner without Ray: commit, answering an already-committed episode from the store, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from automem.llm import ScriptedChatModel
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.scaffold import load
from automem.trajectory import Storage
from automem.trajectory import load as load_store


def script(call):
    last = call.messages[-1]["content"]
    if "Choose your next action" in last:
        return "right"
    if "PLAN:" in last:
        return "SEARCH moved *\nDONE"
    return "APPEND notes.md moved\nDONE"


def one_job(steps=4):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    return make_jobs(
        run_id="r1",
        env_id="corridor-v0",
        episodes=1,
        seeds=[0],
        scaffold=sc,
        memory_model="m",
        action_model="m",
        max_steps=steps,
        env_kwargs={"length": 100, "max_steps": 100},
    )[0]


def runner(tmp_path, client, **kw):
    return EpisodeRunner(RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path), **kw), client)


def test_a_retry_of_a_committed_episode_is_answered_from_the_store(tmp_path):
    job = one_job()
    client = ScriptedChatModel(script)
    first = asyncio.run(runner(tmp_path, client).run(job))
    calls = len(client.calls)
    assert first["steps"] == 4 and "already_committed" not in first
    # The scheduler re-runs it as attempt 2 (say its runner died before the result was collected).
    again = asyncio.run(runner(tmp_path, client).run(job.retry()))
    assert again["already_committed"] and again["attempt"] == 1 and again["steps"] == 4
    assert len(client.calls) == calls, "the episode must not be played again"
    tables = load_store(str(tmp_path))
    assert tables["episodes"].column("attempt").to_pylist() == [1]
    assert tables["steps"].num_rows == 4


def test_an_attempt_over_its_time_limit_fails_with_the_reason_recorded(tmp_path):
    class Hanging(ScriptedChatModel):
        async def chat(self, messages, **kw):
            await asyncio.sleep(30)

    r = runner(tmp_path, Hanging(script), episode_timeout_s=0.3)
    with pytest.raises(TimeoutError, match="episode_timeout_s"):
        asyncio.run(r.run(one_job()))
    tables = load_store(str(tmp_path), tables=("episodes", "attempts"))
    assert tables["episodes"].num_rows == 0
    [attempt] = tables["attempts"].to_pylist()
    assert attempt["status"] == "failed" and "exceeded 0.3 s" in attempt["error"]
    assert Storage(str(tmp_path)).list_files(str(tmp_path / "_staging")) == []


def test_seed_lists():
    from automem.rollout import parse_seeds

    assert parse_seeds("0-3, 7") == [0, 1, 2, 3, 7]
    for bad, why in (
        ("9-1", "bad seed list part"),
        ("-5", "out of range"),
        (str(2**64), "out of range"),
        ("", "empty"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_seeds(bad)
