"""Fixtures for the integration tier: S3 over HTTP (moto's server), the stub model server, the Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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


class Stub:
    def __init__(self, proc, url):
        self.proc, self.url = proc, url

    def stats(self):
        import httpx

        return httpx.get(self.url.replace("/v1", "/stats"), timeout=5).json()


@pytest.fixture
def stub_model():
    """Start stub model servers: ``stub_model(latency=0.0, error_rate=0.0, hang_rate=0.0) -> Stub``."""
    started = []

    def start(latency=0.0, error_rate=0.0, hang_rate=0.0, hang_s=3600.0):
        port_file = tempfile.mktemp()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automem.llm.stub_server",
                "--port",
                "0",
                "--port-file",
                port_file,
                "--latency",
                str(latency),
                "--error-rate",
                str(error_rate),
                "--hang-rate",
                str(hang_rate),
                "--hang-s",
                str(hang_s),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        started.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(port_file) and open(port_file).read().strip():
                return Stub(proc, f"http://127.0.0.1:{open(port_file).read().strip()}/v1")
            time.sleep(0.05)
        raise RuntimeError("stub model server did not start")

    yield start
    for p in started:
        p.kill()
        p.wait()


def wait_for(predicate, timeout=60.0, interval=0.1, what="condition"):
    """Poll instead of sleeping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")
