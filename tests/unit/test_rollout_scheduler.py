# Run: .venv/bin/python -m pytest tests/unit/test_rollout_scheduler.py
"""The scheduler's replacement of a dead runner, on a stand-in for Ray (no cluster needed)."""

from __future__ import annotations

from ray.exceptions import ActorDiedError, RayTaskError

import actors.scheduler as scheduler_mod
from actors.scheduler import RolloutScheduler, _Runner
from automem.rollout import RunnerConfig, make_jobs
from automem.rollout.outcomes import EpisodeOutcome
from automem.scaffold import load
from automem.trajectory import EpisodeWriter, Storage
from automem.trajectory import load as load_store


class FakeRay:
    """Refs are keys of ``outcomes``: a summary, or the exception ``ray.get`` raises for it."""

    def __init__(self, outcomes):
        self.outcomes = outcomes

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs), []  # every task of the dead actor has an outcome

    def get(self, ref, timeout=None):
        outcome = self.outcomes[ref]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def kill(self, handle):
        pass


def test_a_dead_runners_finished_tasks_are_taken_as_they_ended(tmp_path, monkeypatch):
    sc = load("crafter-v0")
    ok, failed, lost = make_jobs(
        run_id="r1",
        env_id="corridor-v0",
        episodes=3,
        seeds=[0, 1, 2],
        scaffold=sc,
        memory_model="m",
        action_model="m",
        max_steps=4,
    )
    storage = Storage(str(tmp_path))
    # The runner recorded why ``failed`` failed before its actor died.
    EpisodeWriter(storage, "r1", failed.episode_id, 1, {}).fail("ValueError: env broke")
    outcomes = {
        "ref-ok": EpisodeOutcome(ok.episode_id, 1, 4, 0.5, 0.0, 10, 0.1, 0.2, 100),
        "ref-failed": RayTaskError("run", "traceback", ValueError("env broke")),
        "ref-lost": ActorDiedError(),
    }
    monkeypatch.setattr(scheduler_mod, "ray", FakeRay(outcomes))
    sched = RolloutScheduler(
        [ok, failed, lost],
        RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path)),
        num_runners=1,
        concurrency=3,
    )
    monkeypatch.setattr(sched, "_start_runner", lambda index: _Runner(object(), index))
    sched.queue.clear()
    dead = _Runner(object(), 0, {"ref-ok": ok, "ref-failed": failed, "ref-lost": lost})
    sched.runners = [dead]
    sched._deaths_in_a_row = 2

    sched._replace(dead, "ActorDiedError: killed")

    assert [d.episode_id for d in sched.result.done] == [ok.episode_id]
    assert sched._deaths_in_a_row == 0, "a finished episode ends a run of deaths, as in _collect"
    assert sorted((j.episode_id, j.attempt) for j in sched.queue) == sorted(
        [(failed.episode_id, 2), (lost.episode_id, 2)]
    )
    errors = {
        a["episode_id"]: a["error"]
        for a in load_store(str(tmp_path), tables=("attempts",))["attempts"].to_pylist()
    }
    assert errors == {
        failed.episode_id: "ValueError: env broke",
        lost.episode_id: "runner died: ActorDiedError: killed",
    }
    assert sched.runners[0] is not dead and sched.result.runner_restarts == 1
