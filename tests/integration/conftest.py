"""Fixtures for the integration tier: S3 over HTTP (moto's server), the stub model server, the Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def ray_session(ray_cluster):
    """The shared local Ray cluster of tests/conftest.py (started once per session)."""
    return ray_cluster


@pytest.fixture(scope="session")
def moto_s3():
    """A real S3-compatible HTTP server on 127.0.0.1 (moto's), with credentials in the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {"url": env["AWS_ENDPOINT_URL"], "port": port, "env": env}
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def make_bucket(endpoint_url: str) -> str:
    import boto3

    name = f"automem-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint_url).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_root(moto_s3):
    """A fresh bucket; yields ``s3://<bucket>/trajectories``."""
    return f"s3://{make_bucket(moto_s3['url'])}/trajectories"


def wait_for(predicate, timeout=60.0, interval=0.1, what="condition"):
    """Poll instead of sleeping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """``automem ARGS`` in a subprocess from the repository root; with ``check``, a non-zero exit fails the test
    showing the output's tails."""
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert res.returncode == 0, f"automem {' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res
