"""Serving benchmark: Ray Serve LLM vs vLLM's offline engine vs plain transformers, on the embedded model.

    RAY_AUTH_MODE=disabled python benchmarks/serving.py [--config deploy/serve-embedded.yaml] [--requests 64]

Prints one JSON line:
- ``serve_vs_direct_throughput_ratio_c32``: generated tokens/s through the Serve endpoint (32 requests in flight)
  over the offline ``vllm.LLM`` engine's on the same prompts with the same engine arguments and at most 32 sequences
  batched (target >= 0.9);
- ``vllm_vs_transformers_ratio``: Serve's tokens/s at 32 in flight over transformers ``generate``, one request at a
  time, fp32 (target >= 10);
- ``prefix_cache_hit_rate``: share of prompt tokens served from the prefix cache over agent-shaped prompts (one
  system prompt, a memory listing, a changing observation), read from the engine's Prometheus counters (target
  >= 0.8);
- ``time_to_ready_s``: from deploy to the first successful chat request (model already prepared).
Engines run one at a time (two vLLM engines do not fit well on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_TOKENS = 64


def prompts(n: int) -> list[list[dict]]:
    """``n`` distinct short chat prompts (one user turn each)."""
    topics = [
        "a tree",
        "water",
        "a zombie",
        "stone",
        "a cow",
        "coal",
        "a table",
        "iron",
        "night",
        "a skeleton",
    ]
    return [
        [
            {
                "role": "user",
                "content": f"In two sentences, what should a survivor do about {topics[i % 10]}? (#{i})",
            }
        ]
        for i in range(n)
    ]


def agent_prompts(n: int) -> list[list[dict]]:
    """Agent-shaped prompts: a long fixed system prompt and memory listing, then a changing observation."""
    system = (
        "You are a Crafter agent with memory files. Each step: LOG what the last action led to, PLAN from memory, "
        "then act. Memory operations, one per line: READ file, SEARCH word file, APPEND file text, "
        "UPSERT file key text, DONE.\n"
        + "".join(f"notes.md line {i}: collected wood near the lake\n" for i in range(40))
    )
    return [
        [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": f"Step {i}. You see grass, a tree to the north, health {9 - i % 3}. LOG:",
            },
        ]
        for i in range(n)
    ]


def transformers_tokens_per_s(model_dir: Path, batch: list[list[dict]]) -> float:
    """Greedy ``generate`` one prompt at a time, fp32; generated tokens per second."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    generated, t0 = 0, time.perf_counter()
    for messages in batch:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        with torch.no_grad():
            out = model.generate(
                torch.tensor([list(ids)]),
                max_new_tokens=MAX_TOKENS,
                min_new_tokens=MAX_TOKENS,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
        generated += out.shape[1] - len(ids)
    return generated / (time.perf_counter() - t0)


async def _serve_run(
    base_url: str, batch: list[list[dict]], model: str, concurrency: int
) -> tuple[int, float]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency * 2)) as client:

        async def one(messages: list[dict]) -> int:
            body = {
                "model": model,
                "messages": messages,
                "max_tokens": MAX_TOKENS,
                "temperature": 0.0,
                "ignore_eos": True,  # vLLM extension: every request generates exactly MAX_TOKENS
            }
            async with sem:
                resp = await client.post(f"{base_url}/chat/completions", json=body)
            resp.raise_for_status()
            return int(resp.json()["usage"]["completion_tokens"])

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one(m) for m in batch))
        return sum(counts), time.perf_counter() - t0


def serve_phase(config: str, n: int) -> dict:
    """Start the endpoint, measure throughput at 32 in flight and the prefix-cache hit rate, stop it."""
    import ray
    from ray import serve

    from actors.cluster import metrics_url
    from actors.serve_app import start_endpoint, stop_endpoint
    from automem.serving.config import load_config
    from automem.serving.metrics import prefix_cache_counters
    from automem.serving.options import engine_kwargs

    cfg = load_config(config)
    ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=False)
    endpoint = None
    try:
        t0 = time.monotonic()
        endpoint = start_endpoint(cfg, progress=lambda m: print(m, file=sys.stderr), api_key="")
        ready_s = time.monotonic() - t0
        asyncio.run(_serve_run(cfg.base_url, prompts(8), cfg.model.id, 8))  # warm-up
        tokens, wall = asyncio.run(_serve_run(cfg.base_url, prompts(n), cfg.model.id, 32))
        q0, h0 = prefix_cache_counters(metrics_url(), at_least=1)
        agent = agent_prompts(48)
        for messages in agent:  # one at a time, as one agent would
            asyncio.run(_serve_run(cfg.base_url, [messages], cfg.model.id, 1))
        q1, h1 = prefix_cache_counters(metrics_url(), at_least=q0 + 1)
        return {
            "serve_tokens_per_s_c32": tokens / wall,
            "prefix_cache_hit_rate": (h1 - h0) / (q1 - q0) if q1 > q0 else None,
            "time_to_ready_s": ready_s,
            "engine_kwargs": engine_kwargs(cfg),
        }
    finally:
        stop_endpoint(endpoint)
        serve.shutdown()
        ray.shutdown()


def offline_run(model_dir: Path | str, kwargs: dict, n: int, cpu_env: dict[str, str]) -> dict[str, float]:
    """``{"tokens_per_s", "ready_s"}`` of the offline engine on ``n`` prompts: :func:`_offline_main` in a fresh
    process (``vllm.LLM`` must start under ``__main__``), with the endpoint's engine arguments and CPU settings
    (KV-cache size, thread binding)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **cpu_env)
    request = json.dumps({"model": str(model_dir), "kwargs": kwargs, "n": n})
    proc = subprocess.run(
        [sys.executable, __file__, "--offline", request], capture_output=True, text=True, env=env, timeout=900
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("OFFLINE "):
            return json.loads(line[len("OFFLINE ") :])
    raise RuntimeError(f"offline engine failed:\n{proc.stderr[-3000:]}")


def _offline_main(request: dict) -> None:
    from vllm import LLM, SamplingParams

    # At most 32 sequences batched, as with 32 requests in flight through Serve.
    t0 = time.perf_counter()
    llm = LLM(model=request["model"], **{**request["kwargs"], "max_num_seqs": 32})
    ready = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    llm.chat(prompts(8), params, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.chat(prompts(request["n"]), params, use_tqdm=False)
    wall = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    print("OFFLINE " + json.dumps({"tokens_per_s": tokens / wall, "ready_s": ready}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "deploy/serve-embedded.yaml"))
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--offline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.offline:
        _offline_main(json.loads(args.offline))
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from automem.llm.embedded import prepare_embedded_model
    from automem.serving.config import load_config

    cfg = load_config(args.config)
    model_dir = prepare_embedded_model(progress=lambda m: print(m, file=sys.stderr))
    hf = transformers_tokens_per_s(model_dir, prompts(4))
    served = serve_phase(args.config, args.requests)
    from automem.serving.options import cpu_engine_env

    direct = offline_run(model_dir, served["engine_kwargs"], args.requests, cpu_engine_env(cfg))[
        "tokens_per_s"
    ]
    serve_tps = served["serve_tokens_per_s_c32"]
    result = {
        "benchmark": "serving",
        "model": cfg.model.id,
        "requests": args.requests,
        "max_tokens": MAX_TOKENS,
        "serve_tokens_per_s_c32": round(serve_tps, 1),
        "direct_tokens_per_s_c32": round(direct, 1),
        "transformers_tokens_per_s": round(hf, 1),
        "serve_vs_direct_throughput_ratio_c32": round(serve_tps / direct, 3),
        "vllm_vs_transformers_ratio": round(serve_tps / hf, 1),
        "prefix_cache_hit_rate": None
        if served["prefix_cache_hit_rate"] is None
        else round(served["prefix_cache_hit_rate"], 3),
        "time_to_ready_s": round(served["time_to_ready_s"], 1),
        "dtype": served["engine_kwargs"]["dtype"],  # what auto resolved to on this machine
        "cpu_threads_bind": cfg.engine.cpu_threads_bind if cfg.accelerator == "cpu" else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
