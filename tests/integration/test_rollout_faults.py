# Run: .venv/bin/python -m pytest tests/integration/test_rollout_faults.py
"""Faults that must end a rollout quickly and clearly, through the real CLI on the shared local Ray cluster: a full
disk, runners that no node can host; and a resume that must keep talking to the run's own endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from automem.trajectory import Storage, committed_episode_ids
from automem.trajectory import load as load_store

from .conftest import ROOT

pytestmark = [pytest.mark.ray]


def cli(address, *args, timeout=240):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", "rollout", "--address", address, "--no-progress", *args]
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return res, time.monotonic() - t0


@pytest.fixture
def address(ray_session):
    return ray_session.get_runtime_context().gcs_address


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs with ~96 KiB left: room for the run's start, not for its episodes. Needs root (the
    project's machines and CI run as root); skipped where mounting is refused."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    (mnt / "ballast").write_bytes(b"\0" * (416 * 1024))
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_ends_the_run_within_a_minute_with_the_cause(address, small_disk, stub_model):
    stub = stub_model(latency=0.01)
    res, took = cli(
        address,
        *("--env", "corridor-v0", "--episodes", "40", "--concurrency", "8", "--max-steps", "60"),
        *("--endpoint", stub.url, "--out", str(small_disk / "runs"), "--run-id", "full"),
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "no space left on the device" in out, out
    assert "Traceback" not in res.stderr, out
    assert took < 60, f"took {took:.0f} s"  # before: 300 s of retries per write, one write after another


def test_a_runner_resource_no_node_has_is_reported_at_once(address, tmp_path, stub_model):
    stub = stub_model()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    cmd = [
        *(sys.executable, "-m", "pipelines.cli", "rollout", "--address", address, "--no-progress"),
        *("--env", "corridor-v0", "--episodes", "2", "--max-steps", "2", "--endpoint", stub.url),
        *("--out", str(tmp_path), "--run-id", "noplace", "--runner-resource", "gpu_box=1"),
        *("--placement-timeout", "8"),
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    first = ""
    while "no node has" not in first and proc.poll() is None:  # Ray's own connection lines come first
        first = proc.stderr.readline()
    said_at = time.monotonic() - t0
    rest = proc.communicate(timeout=120)[1]
    took = time.monotonic() - t0
    assert "no node has the runner resource gpu_box=1" in first, first + rest
    assert said_at < 30, f"said after {said_at:.0f} s"  # interpreter, imports and Ray's connect included
    assert proc.returncode == 1 and "no runner actor was placed within 8 s" in rest, rest
    assert took < 60, f"took {took:.0f} s"  # before: "running 2 · 0.0 steps/s" until killed at 480 s


def test_a_resume_uses_the_runs_endpoint_unless_told_otherwise(address, tmp_path, stub_model):
    stub = stub_model(latency=0.3)
    base = ("--out", str(tmp_path), "--run-id", "ep", "--retry-backoff", "0")
    # Every attempt times out (5 steps x 3 requests x 0.3 s > 1 s), so nothing commits.
    res, _ = cli(
        address,
        *("--env", "corridor-v0", "--episodes", "2", "--max-steps", "5", "--seeds", "0-1"),
        *("--endpoint", stub.url, "--episode-timeout", "1", "--max-attempts", "1", *base),
    )
    assert res.returncode == 1 and not committed_episode_ids(Storage(str(tmp_path)), "ep"), res.stderr
    # The resume names no endpoint: it must use the stub again (the embedded endpoint is not running in this
    # test, and starting it would take minutes).
    res, _ = cli(address, "--resume", "--episode-timeout", "120", *base, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"endpoint {stub.url}" in res.stderr
    assert len(committed_episode_ids(Storage(str(tmp_path)), "ep")) == 2
    attempts = load_store(str(tmp_path), tables=("attempts",))["attempts"].to_pylist()
    assert sorted((a["attempt"], a["status"]) for a in attempts) == [(1, "failed")] * 2 + [(2, "ok")] * 2
