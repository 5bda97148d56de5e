# RAY_AUTH_MODE=disabled python -m pytest tests/integration/test_serve_adapters.py -v -s   (~3-4 min on 2 cores)
"""Merged-copy serving on the real embedded endpoint (``lora.serve_as: merged``, the embedded default).

A tiny LoRA adapter (random A and B, so it changes the output) with a lineage file is published to the running
endpoint's registry; the endpoint merges it and redeploys its app with one more model, and ``<base>:<name>`` answers
a chat completion without the endpoint being restarted: the base engine keeps its replica (same replica id and
process) and keeps answering meanwhile.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.serve, pytest.mark.s3, pytest.mark.slow]

NAME = "merged-probe"
PROMPT = [{"role": "user", "content": "You walked to a tree. What do you write in your notes?"}]


def _tiny_adapter(model_dir, out):
    """A PEFT LoRA (r=8, q_proj/v_proj) with random A and B (PEFT's default B is zero: no effect) and a lineage."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    lineage = {
        "dataset_id": "ds-test",
        "base_model": str(model_dir),
        "preset": "cpu-small",
        "metrics": {"first_loss": 2.5, "last_loss": 1.25},
        "automem_version": "test",
        "created_at": "2026-12-03T00:00:00+00:00",
    }
    (out / "training.json").write_text(json.dumps(lineage))
    return out


def _replica(deployment: str) -> tuple[str, int]:
    """``(replica id, pid)`` of the deployment's one running replica."""
    from ray.serve.context import _get_global_client

    from actors.serve_app import APP_NAME

    details = _get_global_client().get_serve_details()
    replicas = details["applications"][APP_NAME]["deployments"][deployment]["replicas"]
    running = [r for r in replicas if r["state"] == "RUNNING"]
    assert len(running) == 1, replicas
    return running[0]["replica_id"], running[0]["pid"]


def _chat(ep, model: str, max_tokens: int = 16) -> httpx.Response:
    body = {"model": model, "messages": PROMPT, "temperature": 0.0, "max_tokens": max_tokens}
    return httpx.post(f"{ep.base_url}/chat/completions", json=body, headers=ep.headers, timeout=120)


def test_published_adapter_is_served_as_a_merged_copy_without_restarting_the_base(
    embedded_endpoint, tmp_path
):
    ep = embedded_endpoint
    adapter = _tiny_adapter(ep.model_dir, tmp_path / "adapter")
    model = f"{ep.model_id}:{NAME}"
    base_deployment = f"LLMServer:{ep.model_id}"
    before = _replica(base_deployment)
    base_text = _chat(ep, ep.model_id).json()["choices"][0]["message"]["content"]
    assert _chat(ep, model).status_code == 404  # not published yet: a 404 that names it

    t0 = time.monotonic()
    ep.registry.publish(adapter, NAME)
    ep.adapters.append(NAME)
    base_status: list[int | str] = []
    while True:  # the base keeps answering while the copy is merged and deployed
        try:
            base_status.append(_chat(ep, ep.model_id, max_tokens=1).status_code)
        except httpx.HTTPError as exc:
            base_status.append(type(exc).__name__)
        resp = _chat(ep, model)
        if resp.status_code == 200:
            break
        assert time.monotonic() - t0 < 600, resp.text
        time.sleep(2)
    served_after = time.monotonic() - t0
    text = resp.json()["choices"][0]["message"]["content"]
    print(f"{model} answered {served_after:.0f} s after publishing; base answers meanwhile: {base_status}")

    assert text and text != base_text, "a LoRA with random B must change the greedy output"
    assert _replica(base_deployment) == before, "publishing restarted the base engine's replica"
    assert all(s == 200 for s in base_status), base_status
    ids = {m["id"] for m in httpx.get(f"{ep.base_url}/models", headers=ep.headers, timeout=30).json()["data"]}
    assert {ep.model_id, model} <= ids
    (info,) = [i for i in ep.registry.describe() if i.name == NAME]
    assert info.rank == 8 and "dataset ds-test" in info.line() and "loss 2.5->1.25" in info.line()


def test_app_with_merged_copies_pins_engine_versions_and_routes_exact_ids():
    """No cluster needed: the app's engine deployments keep their versions when a model is added (so Serve keeps
    their replicas), a merged copy reserves lora.merged_num_cpus, and the ingress sends an exact id to its own
    deployment, a LoRA id to the base's engine, and an undeployed adapter of a base without LoRA to a 404."""
    from fastapi import HTTPException
    from ray.serve._private.build_app import build_app as build_deployments

    from actors.serve_app import _adapter_ingress_cls, build_app, llm_config, merged_llm_config
    from automem.serving.config import ServeConfig
    from automem.serving.cpu import CpuChoice

    cfg = ServeConfig()
    cpu = CpuChoice(dtype="float32", threads_bind="0-1", dtype_reason="test", bind_reason="test")
    base = llm_config(cfg, "/models/base", env={}, cpu=cpu)
    assert "enable_lora" not in base.engine_kwargs and base.lora_config is None
    merged = merged_llm_config(cfg, "mem", "/models/merged", env={}, cpu=cpu)
    assert merged.model_id == "smollm2-135m:mem" and "enable_lora" not in merged.engine_kwargs

    def deployments(configs):
        app = build_app(cfg, configs, env={}, api_key=None)
        return {d.name: d for d in build_deployments(app, name="t").deployments}

    one, two = deployments([base]), deployments([llm_config(cfg, "/models/base", env={}, cpu=cpu), merged])
    engine = "LLMServer:smollm2-135m"
    assert one[engine].version == two[engine].version and one[engine].version.startswith("automem-")
    copy = two["LLMServer:smollm2-135m:mem"]
    assert copy._replica_config.placement_group_bundles[0]["CPU"] == cfg.lora.merged_num_cpus
    assert copy._replica_config.ray_actor_options["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "1"

    class Handle:
        def __init__(self, name):
            self.name = name

        def options(self, **kw):
            return (self.name, kw.get("multiplexed_model_id"))

    cls = _adapter_ingress_cls()
    ingress = cls({"b": Handle("b"), "b:mem": Handle("b:mem")}, {"b": {}, "b:mem": {}})
    assert ingress._get_configured_serve_handle("b:mem") == ("b:mem", None)
    assert ingress._get_configured_serve_handle("b") == ("b", None)
    with pytest.raises(HTTPException) as exc:
        ingress._get_configured_serve_handle("b:other")
    assert exc.value.status_code == 404 and "not deployed" in exc.value.detail
    lora = cls({"b": Handle("b")}, {"b": {}}, lora_paths={"b": "s3://x/lora"})
    assert lora._get_configured_serve_handle("b:other") == ("b", "b:other")
