# Run: .venv/bin/python -m pytest tests/unit/test_branch_play.py
"""Branch, compare, credit (issue 19, items 2-4) on the local executor with the deterministic stub model: the
control reproduces the parent from the branch step on, nothing before it is stored, parent keys and changes are
recorded, arms change what they say, credits and the ``counterfactual`` strategy read the same numbers, and bad
input is one line with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from automem.branch import BranchArm, BranchPlan, BranchPoint, RestoreError, restore
from automem.branch.compare import compare_rows
from automem.branch.credit import credit_plan, credits, credits_of
from automem.branch.run import run_branches, simple_plan
from automem.rollout import RolloutConfig, RolloutError, run_rollout
from automem.scaffold import load
from automem.trajectory import query

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EP0, EP1 = "000000-crafter-v0-s0", "000001-crafter-v0-s1"


@pytest.fixture(scope="module")
def parent(seeded_stub, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("parent"))
    cfg = RolloutConfig(
        env="crafter-v0",
        episodes=2,
        max_steps=10,
        endpoint=seeded_stub,
        executor="local",
        out=out,
        run_id="p1",
    )
    assert run_rollout(cfg).committed == 2
    return out


def _settings(url: str) -> dict:
    return {"endpoint": url, "executor": "local", "retry_backoff": 0}


def _rows(root: str, sql: str) -> list[dict]:
    return query(root, sql).to_pylist()


def test_control_reproduces_the_parent_and_changes_are_recorded(seeded_stub, parent, tmp_path):
    out = str(tmp_path / "b")
    edit = 'WRITE notes.md "a tree lies north"'
    plan = simple_plan(
        parent, "p1", [EP0, EP1], 4, BranchArm(name="change", memory_edit=[edit]), copies=2, sampling_seed=7
    )
    res = run_branches(plan, out=out, run_id="b1", horizon=5, settings=_settings(seeded_stub))
    assert res.committed == 8 and not res.failed
    # Nothing before the branch step is stored again; steps keep the parent's numbers.
    spans = _rows(out, "SELECT episode_id, min(step) lo, max(step) hi, count(*) n FROM steps GROUP BY 1")
    assert {(r["lo"], r["hi"], r["n"]) for r in spans} == {(4, 8, 5)}
    # The control plays on exactly as the parent did (the stub answers by the prompt; same memory, same game).
    for ep, point in ((EP0, "0000"), (EP1, "0001")):
        sql = "SELECT step, observation, action FROM steps WHERE episode_id = '{}' AND step BETWEEN 4 AND 8 ORDER BY 1"
        want = _rows(parent, sql.format(ep))
        for copy in (0, 1):
            assert _rows(out, sql.format(f"{point}-control-c{copy}")) == want
        turns = "SELECT step, phase, turn, completion FROM turns WHERE episode_id = '{}' AND step BETWEEN 4 AND 8 ORDER BY 1, 2, 3"
        assert _rows(out, turns.format(f"{point}-control-c0")) == _rows(parent, turns.format(ep))
    # The edit is in the change arm's memory from its first turn (its init files), not in the control's.
    init = "SELECT episode_id, list(args) a FROM memory_ops WHERE phase = 'init' GROUP BY 1"
    inits = {r["episode_id"]: json.dumps(r["a"]) for r in _rows(out, init)}
    assert (
        "a tree lies north" in inits["0000-change-c0"] and "a tree lies north" not in inits["0000-control-c0"]
    )
    # Parent keys and what changed, per episode.
    b = {r["episode_id"]: r for r in _rows(out, "SELECT * FROM branches")}
    assert len(b) == 8
    r = b["0001-change-c1"]
    assert (r["parent_run_id"], r["parent_episode_id"], r["parent_attempt"], r["branch_step"]) == (
        "p1",
        EP1,
        1,
        4,
    )
    assert (r["copy"], r["sampling_seed"], r["control"]) == (1, 8, False)
    assert json.loads(r["changes"]) == {"memory_edit": [edit]}
    assert b["0000-control-c0"]["control"] and json.loads(b["0000-control-c0"]["changes"]) == {}
    # A branch episode starts mid-game: restoring it alone is refused, naming the parent.
    with pytest.raises(RestoreError, match="is a branch run \\(of p1"):
        restore(out, "b1", "0000-control-c0", 5)
    # The same call again resumes: nothing is played twice.
    again = run_branches(plan, out=out, run_id="b1", horizon=5, settings=_settings(seeded_stub))
    assert again.committed == 0 and again.skipped == 8
    # Another plan under the same run id is refused.
    other = simple_plan(parent, "p1", [EP0], 4, None, copies=1)
    with pytest.raises(RolloutError, match="another plan"):
        run_branches(other, out=out, run_id="b1", horizon=5, settings=_settings(seeded_stub))


def test_an_edited_scaffold_arm_plays_with_its_scaffold(seeded_stub, parent, tmp_path):
    out = str(tmp_path / "s")
    base = load("crafter-v0")
    edited = base.model_copy(
        update={
            "id": "crafter-edited",
            "prompts": base.prompts.model_copy(update={"plan": "Think, then read one file."}),
        }
    )
    plan = simple_plan(parent, "p1", [EP0], 3, BranchArm(name="change", scaffold=edited), copies=1)
    assert run_branches(plan, out=out, run_id="s1", horizon=4, settings=_settings(seeded_stub)).committed == 2
    ids = {
        r["episode_id"]: r["scaffold_id"] for r in _rows(out, "SELECT episode_id, scaffold_id FROM episodes")
    }
    assert ids == {"0000-control-c0": base.id, "0000-change-c0": "crafter-edited"}
    # The stub answers by the prompt: a new PLAN instruction changes what it writes.
    sql = "SELECT completion FROM turns WHERE episode_id = '{}' AND phase = 'plan' ORDER BY step"
    assert _rows(out, sql.format("0000-change-c0")) != _rows(out, sql.format("0000-control-c0"))


def test_bad_input_is_one_line_and_writes_nothing(seeded_stub, parent, tmp_path):
    out = tmp_path / "bad"
    cases = [
        (simple_plan(parent, "p1", [EP0], 10, None), "step 10 is outside episode"),
        (simple_plan(parent, "p1", ["nope"], 2, None), "not committed"),
        (simple_plan(parent, "p9", [EP0], 2, None), "has no run 'p9'"),
    ]
    for plan, msg in cases:
        with pytest.raises(RolloutError, match=msg) as info:
            run_branches(plan, out=str(out), run_id="x1", horizon=3, settings=_settings(seeded_stub))
        assert "\n" not in str(info.value)
        assert not (out / "runs" / "x1").exists()
    with pytest.raises(ValueError, match="READX"):
        BranchArm(name="change", memory_edit=["READX notes.md"])
    with pytest.raises(ValueError, match="not before the branch step"):
        BranchPoint(episode=EP0, step=3, drop_turns=["3:log:0"])
    # A dropped turn the episode does not have is named when the branch starts.
    plan = BranchPlan(
        parent_out=parent,
        parent_run="p1",
        points=[BranchPoint(episode=EP0, step=3, drop_turns=["1:plan:5"])],
        arms=[BranchArm(name="removed", drop=True)],
    )
    res = run_branches(
        plan,
        out=str(tmp_path / "d"),
        run_id="d1",
        horizon=2,
        settings={**_settings(seeded_stub), "max_attempts": 1},
    )
    assert "no memory turn 1:plan:5" in next(iter(res.failed.values()))
    # A branch run whose every attempt failed is still listed with its parent.
    assert _rows(str(tmp_path / "d"), "SELECT parent_episode_id FROM branches") == [
        {"parent_episode_id": EP0}
    ]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``automem ARGS`` in a subprocess from the repository root."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_plays_compares_and_refuses_a_bad_step(seeded_stub, parent, tmp_path):
    common = ["--endpoint", seeded_stub, "--executor", "local", "--no-progress", "--horizon", "3"]
    out = str(tmp_path / "cli")
    play = ["branch", "play", parent, "p1", EP0]
    res = _cli(
        *play,
        "--at-step",
        "2",
        "--model",
        "smollm2-135m",
        "--copies",
        "2",
        "--out",
        out,
        "--run-id",
        "c1",
        *common,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "change vs control, 2 pairs" in res.stdout
    res = _cli("diagnose", out, "--branches")
    assert res.returncode == 0 and "progression" in res.stdout
    res = _cli(*play, "--at-step", "99", "--out", str(tmp_path / "none"), *common)
    assert res.returncode == 2 and "give a step from 0 to 9" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none" / "runs").exists() or not os.listdir(tmp_path / "none" / "runs")


def _written_log_turns(parent: str) -> list[str]:
    """The LOG turns of ``EP0``'s steps 1..7 that wrote something, as ``STEP:log:TURN``, in step order."""
    sql = (
        "SELECT DISTINCT step, turn FROM memory_ops WHERE episode_id = '{}' AND NOT read_only AND ok "
        "AND phase = 'log' ORDER BY 1"
    )
    return [f"{r['step']}:log:{r['turn']}" for r in _rows(parent, sql.format(EP0)) if 0 < r["step"] < 8]


def test_credit_runs_branch_after_the_turn_with_and_without_it(seeded_stub, parent, tmp_path):
    turn = _written_log_turns(parent)[0]
    step = int(turn.split(":")[0])
    plan = credit_plan(parent, "p1", EP0, [turn], copies=2)
    assert [p.step for p in plan.points] == [step + 1] and plan.points[0].drop_turns == [turn]
    out = str(tmp_path / "credit")
    assert run_branches(plan, out=out, run_id="k1", horizon=3, settings=_settings(seeded_stub)).committed == 4
    # The removed arm's memory lacks what the turn wrote; the recorded arm's has it.
    init = "SELECT list(args) a FROM memory_ops WHERE phase = 'init' AND episode_id = '{}'"
    written = _rows(
        parent,
        f"SELECT args FROM memory_ops WHERE episode_id = '{EP0}' AND step = {step} AND phase = 'log' AND ok AND NOT read_only",
    )
    text = written[0]["args"][-1]
    assert text in json.dumps(_rows(out, init.format("0000-recorded-c0")))
    assert text not in json.dumps(_rows(out, init.format("0000-removed-c0")))
    found = credits(out)
    assert len(found) == 1 and found[0].turn == turn and found[0].parent_run_id == "p1" and found[0].n == 2


def test_compare_pairs_by_point_and_copy_and_credit_flips_the_sign():
    rows = []
    for point in range(3):
        for copy in range(4):
            for arm, prog in (("recorded", 0.5 + 0.1 * copy), ("removed", 0.25 + 0.1 * copy)):
                rows.append(
                    dict(
                        run_id="r",
                        episode_id=f"{point}-{arm}-{copy}",
                        point=point,
                        arm=arm,
                        copy=copy,
                        parent_run_id="p",
                        parent_episode_id="e",
                        branch_step=point + 1,
                        changes=json.dumps({"drop_turns": [f"{point}:log:0"]} if arm == "removed" else {}),
                        progression=prog,
                        steps=5,
                        op_errors=copy if arm == "removed" else 0,
                        ops=10,
                    )
                )
    rows.pop()  # one removed copy lost: its partner is not counted
    (comp,) = compare_rows(rows)
    assert (comp.reference, comp.arm, comp.pairs, comp.unpaired) == ("recorded", "removed", 11, 0)
    assert comp.measures["progression"]["diff"] == pytest.approx(-0.25)
    assert comp.measures["progression"]["lo"] == pytest.approx(-0.25)  # every pair differs by the same amount
    assert comp.measures["op_errors_per_step"]["diff"] > 0
    assert [p.n for p in comp.points] == [4, 4, 3]
    # copies 0..3 of removed fail 0..3 ops in 5 steps; recorded none: the point's mean is 1.5 / 5
    assert comp.points[0].memory["op_errors_per_step"]["diff"] == pytest.approx(0.3)
    found = credits_of([comp])
    assert [c.turn for c in found] == ["0:log:0", "1:log:0", "2:log:0"]
    assert all(c.credit == pytest.approx(0.25) and c.lo <= c.credit <= c.hi for c in found)
    assert all(np.isfinite([c.lo, c.hi]).all() for c in found)
    # In failed memory operations: the removed arm fails more, so the turn spared them (a positive credit).
    errs = credits_of([comp], "op_errors_per_step")
    assert errs[0].measure == "op_errors_per_step" and errs[0].credit == pytest.approx(0.3)
    assert errs[0].lo <= errs[0].credit <= errs[0].hi
    with pytest.raises(ValueError, match="unknown credit measure"):
        credits_of([comp], "ops_per_step")


def test_counterfactual_strategy_keeps_the_credited_turns(seeded_stub, parent, tmp_path):
    from automem.distill import DatasetConfig, build_dataset

    turns = _written_log_turns(parent)[:2]
    cstore = str(tmp_path / "cs")
    run_branches(
        credit_plan(parent, "p1", EP0, turns, copies=1),
        out=cstore,
        run_id="k2",
        horizon=2,
        settings=_settings(seeded_stub),
    )
    found = credits(cstore)
    config = DatasetConfig(
        source=parent, run_id="p1", strategy="counterfactual", credit_store=cstore, credit_min=-1.0
    )
    ds = build_dataset(config, str(tmp_path / "data"))
    rows = query(str(tmp_path / "data"), "SELECT step, phase, turn FROM dataset_rows").to_pylist()
    kept = {(r["step"], r["phase"], r["turn"]) for r in rows}
    want = {(int(t.split(":")[0]), "log", int(t.split(":")[2])) for t in (c.turn for c in found)}
    assert kept == want and ds.manifest["funnel"]["by_strategy"]["counterfactual"] == len(want)
    # Above every credit: nothing is selected, and the builder says so.
    from automem.distill.dataset import DistillError

    with pytest.raises(DistillError):
        build_dataset(config.model_copy(update={"credit_min": 1.0}), str(tmp_path / "data2"))


def test_counterfactual_takes_the_measure_asked_and_the_run_with_more_copies(monkeypatch):
    from automem.branch import credit as credit_mod
    from automem.branch.credit import Credit
    from automem.distill import DatasetConfig
    from automem.distill.strategies import counterfactual
    from automem.distill.turns import MemoryTurn, Source

    def fake(root, run_id=None, measure="progression"):
        assert (root, measure) == ("credits", "op_errors_per_step")
        c = dict(
            parent_run_id="p", parent_episode_id="e", branch_step=4, recorded=0.0, removed=0.0, lo=0, hi=0
        )
        return [
            Credit(turn="3:log:0", n=8, credit=0.2, measure=measure, **c),
            Credit(turn="3:log:0", n=4, credit=-0.5, measure=measure, **c),  # fewer copies: not used
            Credit(turn="5:log:0", n=4, credit=-0.1, measure=measure, **c),
        ]

    monkeypatch.setattr(credit_mod, "credits", fake)
    turns = [MemoryTurn(("p", "e", 1, s, "log", 0), [], "DONE", 1, 0) for s in (3, 5, 6)]
    config = DatasetConfig(
        source="runs", strategy="counterfactual", credit_store="credits", credit_measure="op_errors_per_step"
    )
    verdicts = counterfactual(Source(turns, {}), config)
    assert [v.keep for v in verdicts] == [True, False, False]
    assert verdicts[0].score == 0.2 and verdicts[1].score == -0.1 and np.isnan(verdicts[2].score)
