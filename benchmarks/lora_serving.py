"""Adapter serving benchmark: the same agent-length requests to the base model, to an adapter through vLLM's LoRA,
and to the same adapter's merged copy, side by side in one Serve app on this machine.

    RAY_AUTH_MODE=disabled python benchmarks/lora_serving.py [--requests 4] [--max-rank 16] [--max-tokens 32]
        [--check-unpinned]

One app (deploy/serve-embedded.yaml with ``lora.serve_as=lora``, ``lora.max_rank=16``): the base engine with LoRA
on serves ``<base>`` and ``<base>:bench`` (a random-init rank-16 adapter on q/k/v/o_proj, the cpu-small preset's
shape); the app is then redeployed with one more engine, the adapter merged into a copy of the base, served as
``<base>:bench-merged`` (the redeploy also shows whether the base engine's replica survives it). Requests go one at a
time, rotating the three models per prompt; prompts are benchmarks/serving.py's agent prompts (~650 tokens, most of
them a shared prefix). Prints one JSON line: per model the mean latency, the first (cold-cache) latency, prompt and
generated tokens/s; ``merged_vs_lora_latency_ratio`` and ``merged_vs_lora_tokens_per_s_ratio``; the redeploy's
seconds and whether the base replica was kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import agent_prompts  # noqa: E402


def make_adapter(model_dir: Path, out: Path, rank: int) -> Path:
    """A PEFT LoRA of ``rank`` on q/k/v/o_proj with random A and B (PEFT's default zero B would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


def base_replica(app_name: str, deployment: str) -> tuple[str, int] | None:
    """``(replica id, pid)`` of the deployment's running replica."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = details["applications"][app_name]["deployments"][deployment]["replicas"]
    running = [(r["replica_id"], r["pid"]) for r in replicas if r["state"] == "RUNNING"]
    return running[0] if len(running) == 1 else None


def chat(base_url: str, model: str, messages: list[dict], max_tokens: int) -> dict:
    import httpx

    body = {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens}
    t0 = time.monotonic()
    resp = httpx.post(f"{base_url}/chat/completions", json=body, timeout=900)
    latency = time.monotonic() - t0
    resp.raise_for_status()
    usage = resp.json()["usage"]
    return {"latency_s": latency, "prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"]}


def summarize(rows: list[dict]) -> dict:
    total = sum(r["latency_s"] for r in rows)
    return {
        "mean_latency_s": round(statistics.fmean(r["latency_s"] for r in rows), 2),
        "first_latency_s": round(rows[0]["latency_s"], 2),
        "rest_mean_latency_s": round(statistics.fmean(r["latency_s"] for r in rows[1:]), 2)
        if rows[1:]
        else None,
        "prompt_tokens_mean": round(statistics.fmean(r["prompt"] for r in rows)),
        "prompt_tokens_per_s": round(sum(r["prompt"] for r in rows) / total, 1),
        "generated_tokens_per_s": round(sum(r["completion"] for r in rows) / total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4, help="prompts per model (default 4)")
    parser.add_argument(
        "--max-rank", type=int, default=16, help="lora.max_rank of the LoRA engine (default 16)"
    )
    parser.add_argument("--rank", type=int, default=16, help="the adapter's rank (default 16)")
    parser.add_argument(
        "--max-tokens", type=int, default=32, help="tokens generated per request (default 32)"
    )
    parser.add_argument(
        "--check-unpinned",
        action="store_true",
        help="finally redeploy the same app without automem's pinned engine versions (Serve's default: random "
        "ones) and report whether the base replica survives that",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray import serve

    from actors.serve_app import (
        APP_NAME,
        build_app,
        llm_config,
        merged_llm_config,
        replica_env,
        start_endpoint,
        stop_endpoint,
        wait_until_ready,
    )
    from automem.llm.embedded import prepare_embedded_model
    from automem.serving.config import load_config
    from automem.serving.local_s3 import free_port
    from automem.serving.merge import merge_adapter
    from automem.serving.options import cpu_choice

    overrides = ["lora.serve_as=lora", f"lora.max_rank={args.max_rank}", f"server.port={free_port()}"]
    cfg = load_config(ROOT / "deploy/serve-embedded.yaml", overrides)
    model_dir = prepare_embedded_model()
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=False)
    endpoint = None
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp:
        root = Path(tmp) / "adapters"
        make_adapter(model_dir, root / "bench", args.rank)
        try:
            endpoint = start_endpoint(cfg, progress=say, log_dir=Path(tmp), api_key="", adapters_root=root)
            cpu = cpu_choice(cfg)
            base_id, lora_id, merged_id = (
                cfg.model.id,
                f"{cfg.model.id}:bench",
                f"{cfg.model.id}:bench-merged",
            )
            wait_until_ready(cfg.base_url, lora_id, api_key=None, timeout_s=900)  # loads the adapter once
            deployment = f"LLMServer:{base_id}"
            before = base_replica(APP_NAME, deployment)
            t0 = time.monotonic()
            merged_dir = merge_adapter(root / "bench", model_dir, root=Path(tmp) / "merged", progress=say)
            merge_s = time.monotonic() - t0
            env = replica_env(cfg, endpoint.local_s3, cpu)
            registry_uri = endpoint.registry.uri if endpoint.registry else None
            base = llm_config(cfg, str(model_dir), env=env, registry_uri=registry_uri, cpu=cpu)
            merged = merged_llm_config(cfg, "bench-merged", str(merged_dir), env=env, cpu=cpu)
            t1 = time.monotonic()
            serve.run(build_app(cfg, [base, merged], env=env, api_key=None), name=APP_NAME, route_prefix="/")
            wait_until_ready(cfg.base_url, merged_id, api_key=None, timeout_s=900)
            redeploy_s = time.monotonic() - t1
            after = base_replica(APP_NAME, deployment)
            say(
                f"merged in {merge_s:.0f} s, redeployed in {redeploy_s:.0f} s; base replica {before} -> {after}"
            )
            models = [base_id, lora_id, merged_id]
            rows: dict[str, list[dict]] = {m: [] for m in models}
            for i, messages in enumerate(agent_prompts(args.requests)):
                for model in models[i % 3 :] + models[: i % 3]:
                    rows[model].append(chat(cfg.base_url, model, messages, args.max_tokens))
                    say(f"prompt {i} {model}: {rows[model][-1]}")
            unpinned: dict = {}
            if args.check_unpinned:
                import actors.serve_app as serve_app

                serve_app._pin_version = lambda app, config: None  # what serve.run does without it
                t2 = time.monotonic()
                serve.run(
                    build_app(cfg, [base, merged], env=env, api_key=None), name=APP_NAME, route_prefix="/"
                )
                wait_until_ready(cfg.base_url, base_id, api_key=None, timeout_s=900)
                again = base_replica(APP_NAME, deployment)
                unpinned = {
                    "unpinned_base_replica_kept": again is not None and again == after,
                    "unpinned_redeploy_to_base_ready_s": round(time.monotonic() - t2, 1),
                }
                say(f"unpinned redeploy: base replica {after} -> {again}")
        finally:
            stop_endpoint(endpoint)
            serve.shutdown()
            ray.shutdown()
    out = {name: summarize(rows[m]) for name, m in zip(("base", "lora", "merged"), models, strict=True)}
    result = {
        "benchmark": "lora_serving",
        "requests_per_model": args.requests,
        "max_tokens": args.max_tokens,
        "lora_max_rank": args.max_rank,
        "adapter_rank": args.rank,
        "dtype": cpu.dtype if cpu else None,
        **out,
        "merged_vs_lora_latency_ratio": round(
            out["merged"]["mean_latency_s"] / out["lora"]["mean_latency_s"], 3
        ),
        "merged_vs_lora_tokens_per_s_ratio": round(
            out["merged"]["generated_tokens_per_s"] / out["lora"]["generated_tokens_per_s"], 2
        ),
        "merge_s": round(merge_s, 1),
        "redeploy_to_ready_s": round(redeploy_s, 1),
        "base_replica_kept_on_redeploy": before is not None and before == after,
        **unpinned,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
