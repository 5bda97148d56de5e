# Run: .venv/bin/python -m pytest tests/integration/test_autoscaling.py
"""Autoscaling, shown on Ray's fake multi-node provider (``tests/support/multinode.py``): a head without the
``rollout`` resource, three runners that each need a whole ``rollout`` node, a cap of two such nodes raised to three
once an episode has committed. The autoscaler adds nodes one by one, the rollout gets going on the runners placed
and does not wait for the third, every episode runs on a rollout node, and the idle nodes are removed once the
rollout is done."""

from __future__ import annotations

import pytest

from automem.trajectory import load as load_store
from tests.support import multinode
from tests.support.multinode import seeded_stub

from .test_rollout_races import assert_consistent

pytestmark = [pytest.mark.ray]


def test_the_autoscaler_adds_rollout_nodes_for_the_runners_and_removes_them_when_idle(tmp_path):
    out = str(tmp_path / "runs")
    with seeded_stub(latency=0.1) as url:
        rep = multinode.run("autoscale", url, out, str(tmp_path / "report.json"))
    assert rep["error"] is None, rep
    assert rep["committed"] == 9 and rep["failed"] == {}, rep
    assert rep["took_s"] < 170, f"took {rep['took_s']:.0f} s"

    # Nodes came one by one: none had the runners' resource at first, then one, two (the cap at first), three.
    nodes = set(rep["rollout_nodes_seen"])
    assert len(nodes) == 3 and rep["head"] not in nodes, rep
    counts = [n for _, n, _ in rep["timeline"]]
    assert counts[0] == 0 and {1, 2, 3} <= set(counts), counts
    # The rollout did not wait for every runner: episodes committed while the third could not be placed yet.
    nodes_then, ready_then, committed_then = rep["at_raise"]
    assert nodes_then <= 2 and ready_then <= 2 and committed_then >= 1, rep["at_raise"]

    # Every runner lived on a rollout node, and every episode was played (and committed once) by one of them.
    runners = {k: a for k, a in rep["actors"].items() if a["pid"]}  # the ones that ever ran (placed)
    assert {a["node"] for a in runners.values()} <= nodes and len({a["node"] for a in runners.values()}) >= 2
    pids = {str(a["pid"]) for a in runners.values()}
    attempts = load_store(out, tables=("attempts",))["attempts"].to_pylist()
    assert {a["worker"].rpartition(":")[2] for a in attempts if a["status"] == "ok"} <= pids, attempts
    assert_consistent(out, "r1", [f"{i:06d}-corridor-v0-s{i}" for i in range(9)])

    # Idle once the rollout ended, the nodes were removed (idle timeout 6 s, one autoscaler round a second).
    assert rep["rollout_nodes_left"] == 0 and rep["removed_after_s"] < 60, rep
