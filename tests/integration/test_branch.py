# Run: .venv/bin/python -m pytest tests/integration/test_branch.py
"""Branches on Ray (issue 19): a stored episode branched at t with an edited scaffold, through the rollout library
call on runner actors: nothing before t is stored, parent keys are set, the control with the deterministic stub
reproduces the original from t on, every branch episode commits once, and a second call resumes without replaying."""

from __future__ import annotations

import json
import os

import pytest

from automem.branch import BranchArm
from automem.branch.run import run_branches, simple_plan
from automem.rollout import RolloutConfig, run_rollout
from automem.scaffold import load
from automem.trajectory import query

pytestmark = [pytest.mark.ray]


def test_branches_run_on_ray_and_the_control_reproduces_the_parent(ray_session, seeded_stub, tmp_path):
    ray = ray_session
    address = ray.get_runtime_context().gcs_address
    common = {"endpoint": seeded_stub, "address": address, "retry_backoff": 0, "concurrency": 8}
    parent = str(tmp_path / "parent")
    cfg = RolloutConfig(env="crafter-v0", episodes=3, max_steps=9, out=parent, run_id="p", **common)
    assert run_rollout(cfg).committed == 3
    base = load("crafter-v0")
    edited = base.model_copy(
        update={
            "id": "crafter-log-more",
            "prompts": base.prompts.model_copy(update={"log": "Write down what changed."}),
        }
    )
    episodes = ["000000-crafter-v0-s0", "000001-crafter-v0-s1", "000002-crafter-v0-s2"]
    plan = simple_plan(parent, "p", episodes, 5, BranchArm(name="change", scaffold=edited), copies=2)
    out = str(tmp_path / "branches")
    res = run_branches(plan, out=out, run_id="b", horizon=4, settings=common)
    assert (res.committed, res.failed) == (12, {})
    assert query(out, "SELECT count(*) n FROM episodes").to_pylist() == [{"n": 12}]
    workers = query(out, "SELECT DISTINCT worker FROM attempts").to_pylist()
    assert workers and all(not w["worker"].endswith(f":{os.getpid()}") for w in workers)  # runner actors
    assert query(out, "SELECT min(step) lo, max(step) hi FROM steps").to_pylist() == [{"lo": 5, "hi": 8}]
    rows = query(out, "SELECT * FROM branches ORDER BY episode_id").to_pylist()
    assert {
        (r["parent_run_id"], r["parent_episode_id"], r["branch_step"], r["parent_attempt"]) for r in rows
    } == {("p", e, 5, 1) for e in episodes}
    assert {json.dumps(json.loads(r["changes"])) for r in rows if r["arm"] == "change"} == {
        json.dumps({"scaffold": "crafter-log-more"})
    }
    sql = "SELECT step, observation, action FROM steps WHERE episode_id = '{}' AND step BETWEEN 5 AND 8 ORDER BY 1"
    for i, ep in enumerate(episodes):
        want = query(parent, sql.format(ep)).to_pylist()
        for k in (0, 1):
            assert query(out, sql.format(f"{i:04d}-control-c{k}")).to_pylist() == want
    again = run_branches(plan, out=out, run_id="b", horizon=4, settings=common)
    assert (again.committed, again.skipped) == (0, 12)
