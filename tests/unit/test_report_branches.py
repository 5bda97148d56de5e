# Run: .venv/bin/python -m pytest tests/unit/test_report_branches.py
"""`automem report` draws branch runs (``automem.report.branches``): per branch point the parent's timeline, the
branch step, each branch episode's span, arm, copy and final progression, and the first step at which it acted
otherwise than the parent (the control never does under the deterministic stub model; an arm with an edited memory
does); per run the arms compared with the reference. A parent store that cannot be read is drawn from the branch step
only and said so; the view is bounded and says what it left out; a store without branches has no section."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from automem.branch import BranchArm
from automem.branch.run import run_branches, simple_plan
from automem.report import ReportConfig, build_payload, render_html
from automem.report import branches as bv
from automem.rollout import RolloutConfig, run_rollout
from automem.trajectory import query

EP = "000000-crafter-v0-s0"
STEP = 3


def make_branch_store(url: str, parent: str, out: str) -> None:
    """A parent rollout (one crafter episode, 8 steps) and a branch run ``b1`` of it at step ``STEP``: arms
    control and change (an edited memory), two copies each, 4 steps on."""
    cfg = RolloutConfig(
        env="crafter-v0", episodes=1, max_steps=8, endpoint=url, executor="local", out=parent, run_id="p1"
    )
    assert run_rollout(cfg).committed == 1
    edit = 'WRITE notes.md "a tree lies north"'
    plan = simple_plan(parent, "p1", [EP], STEP, BranchArm(name="change", memory_edit=[edit]), copies=2)
    settings = {"endpoint": url, "executor": "local", "retry_backoff": 0}
    assert run_branches(plan, out=out, run_id="b1", horizon=4, settings=settings).committed == 4


@pytest.fixture(scope="module")
def stores(seeded_stub, tmp_path_factory):
    base = tmp_path_factory.mktemp("br")
    make_branch_store(seeded_stub, str(base / "parent"), str(base / "b"))
    return str(base / "parent"), str(base / "b")


def _actions(root: str, run: str, ep: str) -> dict[int, str]:
    sql = f"SELECT step, action FROM steps WHERE run_id = '{run}' AND episode_id = '{ep}'"
    return {r["step"]: r["action"] for r in query(root, sql).to_pylist()}


def test_each_point_draws_the_parent_and_where_each_branch_diverged(stores):
    parent, out = stores
    payload = build_payload(out, ReportConfig())
    (run,) = payload["branches"]
    assert run["run_id"] == "b1" and run["arms"] == ["control", "change"] and run["reference"] == "control"
    assert run["n_points"] == 1 and run["n_episodes"] == 4
    (point,) = run["points"]
    assert point["parent_readable"] and point["parent_steps"] == 8 and point["branch_step"] == STEP
    assert (point["parent_run_id"], point["parent_episode_id"], point["parent_out"]) == ("p1", EP, parent)
    assert point["changes"]["control"] == "" and "a tree lies north" in point["changes"]["change"]
    lines = {(b["arm"], b["copy"]): b for b in point["branches"]}
    assert list(lines) == [("control", 0), ("control", 1), ("change", 0), ("change", 1)]
    progression = {
        r["episode_id"]: r["progression"]
        for r in query(out, "SELECT episode_id, progression FROM episodes").to_pylist()
    }
    want = _actions(parent, "p1", EP)
    for b in lines.values():
        assert (b["start"], b["end"]) == (STEP, STEP + 4)
        assert b["progression"] == pytest.approx(progression[b["episode_id"]])
        mine = _actions(out, "b1", b["episode_id"])
        first = next((t for t in sorted(mine) if mine[t] != want[t]), None)
        assert b["diverged_at"] == first
        if first is not None:
            assert (b["action"], b["parent_action"]) == (mine[first], want[first])
    # The stub answers by the prompt: the control replays the parent, the edited memory changes the answer.
    assert lines[("control", 0)]["diverged_at"] is None and lines[("control", 1)]["diverged_at"] is None
    assert lines[("change", 0)]["diverged_at"] is not None
    (comp,) = run["comparison"]
    assert (comp["arm"], comp["reference"], comp["pairs"]) == ("change", "control", 2)
    prog = comp["measures"]["progression"]
    assert prog["lo"] <= prog["diff"] <= prog["hi"]
    assert not payload["notes"]
    page = render_html(payload)
    assert '<section id="branches" hidden>' in page and "function renderBranches" in page
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m and json.loads(m.group(1))["branches"] == payload["branches"]


def test_an_unreadable_parent_is_drawn_from_the_branch_step_and_noted(seeded_stub, tmp_path):
    parent, out = str(tmp_path / "parent"), str(tmp_path / "b")
    make_branch_store(seeded_stub, parent, out)
    shutil.rmtree(parent)
    payload = build_payload(out, ReportConfig())
    (point,) = payload["branches"][0]["points"]
    assert not point["parent_readable"] and point["parent_steps"] is None
    assert all(b["diverged_at"] is None for b in point["branches"])
    assert any("not readable" in n and parent in n for n in payload["notes"]), payload["notes"]


def test_the_view_is_bounded_and_says_what_it_left_out(stores, monkeypatch):
    _, out = stores
    monkeypatch.setattr(bv, "_MAX_LINES", 3)
    payload = build_payload(out, ReportConfig())
    (point,) = payload["branches"][0]["points"]
    # The first copies of every arm come first.
    assert [(b["arm"], b["copy"]) for b in point["branches"]] == [
        ("control", 0),
        ("control", 1),
        ("change", 0),
    ]
    assert any("leaves out 0 branch point(s)" in n and "1 branch episode(s)" in n for n in payload["notes"])
    monkeypatch.setattr(bv, "_MAX_RUNS", 0)
    payload = build_payload(out, ReportConfig())
    assert payload["branches"] == [] and any("0 of 1 branch runs" in n for n in payload["notes"])


def test_a_store_without_branches_has_no_branch_view(stores):
    parent, _ = stores
    payload = build_payload(parent, ReportConfig())
    assert payload["branches"] == [] and not payload["notes"]
