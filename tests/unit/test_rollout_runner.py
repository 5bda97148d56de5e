# Run: .venv/bin/python -m pytest tests/unit/test_rollout_runner.py
"""The episode runner without Ray: commit, answering an already-committed episode from the store, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from automem.agent.events import EpisodeEnd
from automem.llm import ScriptedChatModel
from automem.llm.fake import step_script
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.scaffold import load
from automem.trajectory import EpisodeWriter, Storage
from automem.trajectory import load as load_store

script = step_script("right", "moved")


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


class Hanging(ScriptedChatModel):
    """A model server that never answers in time."""

    async def chat(self, messages, **kw):
        await asyncio.sleep(30)


def runner(tmp_path, client, **kw):
    return EpisodeRunner(RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path), **kw), client)


def test_a_retry_of_a_committed_episode_is_answered_from_the_store(tmp_path):
    job = one_job()
    client = ScriptedChatModel(script)
    first = asyncio.run(runner(tmp_path, client).run(job))
    calls = len(client.calls)
    assert first.steps == 4 and not first.already_committed
    # The scheduler re-runs it as attempt 2 (say its runner died before the result was collected).
    again = asyncio.run(runner(tmp_path, client).run(job.retry()))
    assert again.already_committed and again.attempt == 1 and again.steps == 4
    assert len(client.calls) == calls, "the episode must not be played again"
    tables = load_store(str(tmp_path))
    assert tables["episodes"].column("attempt").to_pylist() == [1]
    assert tables["steps"].num_rows == 4


class CommitsAnotherAttemptFirst(ScriptedChatModel):
    """While this attempt plays, attempt 1 of the same episode commits (its runner had only seemed dead)."""

    def __init__(self, script, storage, job):
        super().__init__(script)
        self.other = EpisodeWriter(storage, job.run_id, job.episode_id, 1, {})

    async def chat(self, messages, **kw):
        if not self.calls:
            self.other.commit(
                EpisodeEnd(self.other.episode_id, "corridor-v0", 0, 7, 0, 0.5, True, False, *[0] * 8)
            )
        return await super().chat(messages, **kw)


def test_an_attempt_that_another_commits_first_is_answered_with_that_record(tmp_path):
    job = one_job().retry()
    client = CommitsAnotherAttemptFirst(script, Storage(str(tmp_path)), job)
    summary = asyncio.run(runner(tmp_path, client).run(job))
    assert summary.already_committed and summary.attempt == 1 and summary.steps == 7
    assert load_store(str(tmp_path))["episodes"].column("attempt").to_pylist() == [1]


def test_an_attempt_over_its_time_limit_fails_with_the_reason_recorded(tmp_path):
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


def test_the_cli_help_states_the_config_defaults():
    import argparse

    from automem.rollout import RolloutConfig
    from pipelines.rollout import FLAGS, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    for field, _, _ in FLAGS.values():
        default = RolloutConfig.model_fields[field].default
        if default is not None and not isinstance(default, dict):
            assert helps[field].rstrip(")").endswith(f"default {default}"), (field, helps[field])


def test_runner_resources():
    from automem.rollout.resume import parse_resources

    assert parse_resources(["rollout=0.01", "x=2"]) == {"rollout": 0.01, "x": 2.0}
    for bad in ("rollout", "=1", "a=-1", "a=0", "a=nan", "a=b"):
        with pytest.raises(ValueError, match="NAME=AMOUNT"):
            parse_resources([bad])


def test_next_attempts_count_recorded_and_staged_attempts(tmp_path):
    from automem.rollout.resume import next_attempts

    job = one_job()

    with pytest.raises(TimeoutError):  # attempt 1 fails and is recorded
        asyncio.run(runner(tmp_path, Hanging(script), episode_timeout_s=0.2).run(job))
    storage = Storage(str(tmp_path))
    assert next_attempts(storage, "r1") == {job.episode_id: 2}
    # Attempt 5 of another episode died with the process: only its staging folder is left.
    storage.write_bytes(storage.path("_staging", "r1", "other-ep", "a5", "steps", "p00000.parquet"), b"x")
    assert next_attempts(storage, "r1") == {job.episode_id: 2, "other-ep": 6}
