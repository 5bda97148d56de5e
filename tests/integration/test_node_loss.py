# Run: .venv/bin/python -m pytest tests/integration/test_node_loss.py
"""A rollout node lost mid-run: on a cluster of its own (a head without the ``rollout`` resource and three rollout
nodes, all processes on this machine, ``tests/support/multinode.py``), one node is killed while every runner is
mid-episode. The run finishes, every episode is committed once, and the store holds what a clean run on the same
seeds holds (the seeded stub model makes an episode a function of its seed)."""

from __future__ import annotations

import pytest

from automem.rollout import run_rollout
from automem.trajectory import load as load_store
from tests.support import multinode
from tests.support.multinode import rollout_config, seeded_stub, store_digest

from .test_rollout_races import assert_consistent

pytestmark = [pytest.mark.ray]


def test_a_lost_node_costs_only_its_runners_episodes_and_the_store_is_a_clean_runs(tmp_path):
    out, clean = str(tmp_path / "lost"), str(tmp_path / "clean")
    with seeded_stub(latency=0.1) as url:
        rep = multinode.run("node-loss", url, out, str(tmp_path / "report.json"))
        # The same seeds played cleanly, in this process and without Ray.
        run_rollout(rollout_config(url, clean, executor="local"))
    assert rep["error"] is None, rep
    assert rep["committed"] == 9 and rep["failed"] == {}, rep
    assert rep["took_s"] < 150, f"took {rep['took_s']:.0f} s"

    # The runners were spread: one on each rollout node (two nodes could have held all three), none on the head.
    first = rep["initial_runner_nodes"]
    assert len(first) == 3 and set(first.values()) == set(rep["workers"]), rep
    # The node went while its runner played; the runner was replaced and only its episodes were played again.
    assert rep["victim"] in first.values() and rep["committed_when_removed"] < 9, rep
    assert rep["runner_restarts"] >= 1, rep
    attempts = load_store(out, tables=("attempts",))["attempts"].to_pylist()
    again = [a for a in attempts if a["status"] == "failed"]
    assert again and all(a["error"].startswith("runner died") for a in again), again
    assert len(again) <= 2, "at most the lost runner's share (2 of the 6 in flight) is played again"
    victim_pids = {str(a["pid"]) for a in rep["actors"].values() if a["node"] == rep["victim"]}
    assert {a["worker"].rpartition(":")[2] for a in again} <= victim_pids, (again, rep["actors"])

    assert_consistent(out, "r1", [f"{i:06d}-corridor-v0-s{i}" for i in range(9)])  # every episode once
    assert store_digest(out) == store_digest(clean)
