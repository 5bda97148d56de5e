# python -m pytest tests/unit/test_serving.py -q
"""Serve config schema, the API-key middleware, the embedded model's cache key, the adapter registry's checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from automem.serving import adapters
from automem.serving.auth import ApiKeyMiddleware
from automem.serving.config import ConfigError, ServeConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_configs_parse_strictly():
    embedded = load_config(ROOT / "deploy/serve-embedded.yaml")
    assert embedded.model.id == "smollm2-135m" and embedded.model.source == "embedded"
    assert embedded.accelerator == "cpu" and embedded.lora.enabled
    assert embedded.base_url == "http://127.0.0.1:8000/v1"
    gpu = load_config(ROOT / "deploy/serve-gpu.yaml")
    assert gpu.accelerator == "gpu" and gpu.engine.tensor_parallel_size == 2
    assert gpu.engine.enable_prefix_caching and gpu.lora.enabled
    assert gpu.deployment.autoscaling is not None and gpu.deployment.autoscaling.target_ongoing_requests > 0
    assert gpu.lora.registry.startswith("s3://")


def test_defaults_are_the_embedded_endpoint_on_loopback():
    cfg = ServeConfig()
    assert (cfg.server.host, cfg.server.port, cfg.model.id) == ("127.0.0.1", 8000, "smollm2-135m")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"deployment": {"min_replica": 2}}, "deployment.min_replica"),
        ({"deployment": {"autoscaling": {"min_replicas": 1, "max_replicas": 4}}}, "target_ongoing_requests"),
        ({"engine": {"max_model_len": "long"}}, "engine.max_model_len"),
        ({"engine": {"tensor_parallel_size": 2}}, "tensor_parallel_size"),
        ({"lora": {"registry": "/tmp/adapters"}}, "lora"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"modle": {"id": "x"}}, "modle"),
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert field in str(exc.value)


def test_overrides_apply_yaml_scalars_and_are_checked(tmp_path):
    cfg = load_config(ROOT / "deploy/serve-embedded.yaml", ["server.port=8123", "lora.enabled=false"])
    assert cfg.server.port == 8123 and not cfg.lora.enabled
    with pytest.raises(ConfigError, match="engine.bogus"):
        load_config(None, ["engine.bogus=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["server.port"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_config_is_frozen():
    cfg = ServeConfig()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError for frozen instances
        cfg.server.port = 1  # type: ignore[misc]


def _call(mw: ApiKeyMiddleware, headers: dict[str, str], path: str = "/v1/models") -> int:
    seen: list[int] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw.app = app

    async def send(message):
        if message["type"] == "http.response.start":
            seen.append(message["status"])

    scope = {
        "type": "http",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(mw(scope, None, send))
    return seen[0]


def test_api_key_middleware():
    mw = ApiKeyMiddleware(None, api_key="s3cret")
    assert _call(mw, {}) == 401
    assert _call(mw, {"Authorization": "Bearer nope"}) == 401
    assert _call(mw, {"Authorization": "Bearer s3cret"}) == 200
    assert _call(mw, {"x-api-key": "s3cret"}) == 200
    assert _call(mw, {}, path="/-/healthz") == 200
    assert _call(ApiKeyMiddleware(None, api_key=None), {}) == 200


def test_adapter_names_and_folders(tmp_path):
    assert adapters.check_name("memory-v1.2") == "memory-v1.2"
    for bad in ("a:b", "a/b", "", "-x"):
        with pytest.raises(ValueError):
            adapters.check_name(bad)
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        (tmp_path / "adapter_config.json").write_text("{}")
        adapters.check_adapter_dir(tmp_path)
    assert adapters.split_s3("s3://bucket/a/b/") == ("bucket", "a/b")


def test_local_adapter_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in adapters.REQUIRED_FILES:
        (src / f).write_text("x")
    root = tmp_path / "registry"
    adapters.save_local(src, "one", root=root)
    adapters.save_local(src, "one", root=root)  # replacing is fine
    assert adapters.list_local(root) == ["one"]


def test_embedded_model_cache_key(tmp_path, monkeypatch):
    from automem.llm import embedded

    monkeypatch.setenv("AUTOMEM_CACHE_DIR", str(tmp_path))
    assert embedded.cache_dir() == tmp_path
    gguf = embedded.find_gguf()
    folder = embedded.prepared_dir(gguf)
    assert folder.parent == tmp_path / "models" and folder.name.startswith("smollm2-135m-")
    assert not embedded.is_prepared(folder)
