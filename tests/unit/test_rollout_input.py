# Run: .venv/bin/python -m pytest tests/unit/test_rollout_input.py
"""`automem rollout` refuses input that would fail every attempt, or exhaust the driver, before anything is
written: one line, exit code 2, no `runs/<id>/` folder (real CLI in a subprocess; no Ray is started)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from automem.scaffold import load, to_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEAD = "http://127.0.0.1:9/v1"  # nothing listens on port 9: a start that got that far fails "not reachable"


def rollout(tmp_path, *args, timeout=120):
    cmd = [sys.executable, "-m", "pipelines.cli", "rollout", "--out", str(tmp_path / "out"), "--run-id", "r1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def assert_refused(res, tmp_path, *needles):
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("automem rollout: "), res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (tmp_path / "out" / "runs").exists(), "a refused start leaves no run folder"
    assert not (tmp_path / "out" / "tables").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--episode-timeout", "nan"], ["episode_timeout (--episode-timeout)", "above 0"]),
        (["--episode-timeout", "inf"], ["--episode-timeout", "finite"]),
        (["--context-window", "-5"], ["--context-window", "256"]),
        (["--runner-resource", "CPU=1"], ["CPU is Ray's own resource"]),
        (["--runner-resource", "rollout=0.00001"], ["4 decimals"]),
        (["--episodes", "200000000"], ["episodes (--episodes)", "1000000"]),
        (["--retry-backoff", "-1"], ["--retry-backoff", "at least 0"]),
        (["--placement-timeout", "0"], ["--placement-timeout", "above 0"]),
    ],
)
def test_settings_that_would_fail_later_are_refused_up_front(tmp_path, args, needles):
    assert_refused(rollout(tmp_path, "--endpoint", DEAD, *args, timeout=60), tmp_path, *needles)


def test_a_huge_seed_range_is_not_expanded(tmp_path):
    # Gets as far as the (dead) endpoint: the billion seeds were never listed (that took 60+ s and 30+ GB).
    res = rollout(tmp_path, "--endpoint", DEAD, "--seeds", "0-1000000000", "--episodes", "3", timeout=60)
    assert_refused(res, tmp_path, "not reachable")


def test_a_scaffold_whose_prompt_cannot_fit_is_refused_before_the_manifest(tmp_path):
    sc = load("crafter-v0")
    big = sc.model_copy(update={"prompts": sc.prompts.model_copy(update={"system": "Remember. " * 500_000})})
    path = tmp_path / "big.yaml"
    path.write_text(to_yaml(big))
    assert path.stat().st_size > 4_000_000
    res = rollout(tmp_path, "--endpoint", DEAD, "--scaffold", str(path))
    assert_refused(res, tmp_path, "static prompt does not fit")


def test_a_context_window_smaller_than_the_scaffolds_budget_is_refused(tmp_path):
    res = rollout(tmp_path, "--endpoint", DEAD, "--context-window", "1024")
    assert_refused(res, tmp_path, "exceeds the model's context window (1024)")


def test_a_dead_endpoint_leaves_no_run_folder(tmp_path):
    # The lease is taken before the endpoint is asked; a start that fails then must leave nothing behind.
    assert_refused(rollout(tmp_path, "--endpoint", DEAD), tmp_path, "not reachable")
