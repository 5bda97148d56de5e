# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_evolve.py -q
"""``automem evolve`` end to end with the stub model's scaffold-sensitive ``route`` policy, rollouts on the session's
Ray cluster: the rules reviewer's first patch (give route.md content) makes the toy walk to the goal and is
accepted, its second (keyed notes) confuses it and is rejected; both are in the lineage table. A run killed with
SIGKILL in the middle of an iteration resumes with the same command, and every episode is committed once. The
loops compose: Loop 2 collects with the evolved scaffold, and Loop 2's specialist plays evolve's memory turns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from automem.llm.stub_server import spawn
from automem.trajectory import connect

from .conftest import ROOT, run_cli, wait_for

pytestmark = [pytest.mark.ray]

TOY = (Path(ROOT) / "tests" / "support" / "corridor-toy.yaml").read_text()  # the README's toy scaffold


@pytest.fixture(scope="module")
def route_stub():
    proc, url = spawn(policy="route")
    yield url
    proc.kill()
    proc.wait()


def _args(tmp_path, url: str, address: str, iterations: int, *extra: str) -> list[str]:
    (tmp_path / "toy.yaml").write_text(TOY)
    return [
        "evolve",
        "--env",
        "corridor-v0",
        "--scaffold",
        str(tmp_path / "toy.yaml"),
        "--endpoint",
        url,
        "--model",
        "stub",
        "--tune-seeds",
        "0-7",
        "--holdout-seeds",
        "100-107",
        "--iterations",
        str(iterations),
        "--max-steps",
        "6",
        "--out",
        str(tmp_path / "store"),
        "--no-progress",
        *extra,
        f"address={address}",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


def test_evolve_accepts_the_good_patch_rejects_the_bad_one_and_resumes_after_a_kill(
    ray_session, route_stub, tmp_path
):
    import ray

    address = ray.get_runtime_context().gcs_address
    first = run_cli(*_args(tmp_path, route_stub, address, 1), env=_env(), timeout=600)
    assert "  1 accepted        corridor-evo-" in first.stdout and "missing_file" in first.stdout
    assert "held-out seeds 100-107 (8 pairs): progression" in first.stdout

    # Iteration 2, killed while its candidate plays: the third tuning run has started when its manifest exists.
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *_args(tmp_path, route_stub, address, 2)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (
                len([p for p in (store / "runs").iterdir() if p.name.endswith("-tune")]) >= 3
                or proc.poll() is not None
            ),
            timeout=300,
            what="the second candidate's rollout",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    again = run_cli(*_args(tmp_path, route_stub, address, 2), env=_env(), timeout=600)
    assert "  2 rejected        corridor-evo-" in again.stdout and "keyed_file" in again.stdout
    assert "accepted 1 of 2 candidates" in again.stdout

    con = connect(str(store))
    try:
        rows = con.sql(
            "SELECT iteration, decision, rule, n_seeds, lower, margin FROM lineage ORDER BY iteration"
        ).fetchall()
        per_run = con.sql(
            "SELECT run_id, count(*), count(DISTINCT seed) FROM episodes GROUP BY run_id"
        ).fetchall()
    finally:
        con.close()
    assert [r[:3] for r in rows] == [
        (0, "start", None),
        (1, "accepted", "missing_file"),
        (2, "rejected", "keyed_file"),
    ]
    assert rows[1][3] == 8 and rows[1][4] > rows[1][5] and rows[2][4] <= rows[2][5]
    # Three tuning runs and two held-out runs, each with its 8 seeds committed exactly once.
    assert sorted(n for _, n, _ in per_run) == [8] * 5 and all(n == d for _, n, d in per_run)
    query = run_cli("query", str(store), "SELECT count(*) AS n FROM lineage", env=_env())
    assert "3" in query.stdout

    # Loop 2 collects with the evolved scaffold, and builds a dataset from those episodes.
    final = store / "evolve" / "evolve" / "final.yaml"
    collect = [
        "rollout", "--env", "corridor-v0", "--scaffold", str(final), "--endpoint", route_stub, "--model", "stub",
        "--episodes", "4", "--seeds", "200-203", "--max-steps", "6", "--executor", "local", "--out", str(store),
        "--run-id", "collect", "--no-progress",
    ]  # fmt: skip
    run_cli(*collect, env=_env(), timeout=300)
    con = connect(str(store))
    try:
        (scaffold_id,) = con.execute(
            "SELECT DISTINCT scaffold_id FROM episodes WHERE run_id = 'collect'"
        ).fetchone()
    finally:
        con.close()
    assert scaffold_id == rows_accepted_id(store)
    data = run_cli(
        "distill", "dataset", "--from", str(store), "--run", "collect", "--strategy", "wellformed",
        "--out", str(tmp_path / "data"), env=_env(),
    )  # fmt: skip
    assert "dataset" in data.stdout


def rows_accepted_id(store) -> str:
    con = connect(str(store))
    try:
        return con.execute("SELECT scaffold_id FROM lineage WHERE decision = 'accepted'").fetchall()[0][0]
    finally:
        con.close()


def test_evolve_with_an_openai_reviewer_that_answers_nothing_useful_records_it(
    ray_session, route_stub, tmp_path
):
    """The stub answers a reviewer's JSON request with ``{}``: a patch that changes nothing, refused and counted."""
    import ray

    address = ray.get_runtime_context().gcs_address
    args = _args(
        tmp_path,
        route_stub,
        address,
        1,
        "--reviewer",
        f"openai:stub@{route_stub}",
        "--holdout-seeds",
        "none",
        "--memory-model",
        "stub:specialist",
    )
    res = run_cli(*args, env=_env(), timeout=600)
    assert "  1 invalid_patch" in res.stdout and "changes nothing" in res.stdout
    con = connect(str(tmp_path / "store"))
    try:
        models = con.sql("SELECT DISTINCT phase, model FROM turns ORDER BY phase").fetchall()
    finally:
        con.close()
    assert models == [("action", "stub"), ("log", "stub:specialist"), ("plan", "stub:specialist")]


def test_evolve_bad_input_is_one_line_before_anything_runs(tmp_path):
    dead = run_cli(
        "evolve",
        "--reviewer",
        "openai:m@http://127.0.0.1:9/v1",
        "--out",
        str(tmp_path),
        env=_env(),
        check=False,
    )
    assert (
        dead.returncode == 2 and "not reachable" in dead.stderr and len(dead.stderr.strip().splitlines()) == 1
    )
    bad = run_cli("evolve", "--scaffold", "nope.yaml", "--out", str(tmp_path), env=_env(), check=False)
    assert bad.returncode == 2 and "no scaffold 'nope.yaml'" in bad.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lineage").exists()
