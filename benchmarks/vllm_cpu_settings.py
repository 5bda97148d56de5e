"""vLLM CPU engine settings side by side: dtype and thread binding, on the embedded model with LoRA on.

    .venv/bin/python benchmarks/vllm_cpu_settings.py                 # 4 settings, about 6 minutes on 2 cores
    .venv/bin/python benchmarks/vllm_cpu_settings.py --requests 32

Each setting runs the offline ``vllm.LLM`` engine in a fresh process (the engine must start under ``__main__``)
with the embedded config's engine arguments (``deploy/serve-embedded.yaml``) except the one varied, on the same
prompts: 64 chat requests of exactly 64 tokens, at most 32 batched. Prints one JSON line with generated tokens/s
and engine start time per setting, and the ratios that back the embedded config's choices:
- ``float32_vs_bfloat16``: float32 over bfloat16 with vLLM's default binding (``auto``);
- ``bind_all_vs_auto_float32``: model threads on every core over vLLM's ``auto`` (which keeps a core per engine for
  its scheduler process), in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = [("bfloat16", "auto"), ("float32", "auto"), ("bfloat16", "all"), ("float32", "all")]


def _one(request: dict) -> None:
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(model=request["model"], **request["kwargs"])
    ready = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=64, ignore_eos=True)
    prompts = [
        [{"role": "user", "content": f"In two sentences, what should a survivor do about item {i}?"}]
        for i in range(request["requests"])
    ]
    llm.chat(prompts[:8], params, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.chat(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    print("RESULT " + json.dumps({"tokens_per_s": tokens / wall, "ready_s": ready}), flush=True)


def measure(model_dir: str, kwargs: dict, env: dict[str, str], requests: int) -> dict:
    request = json.dumps({"model": model_dir, "kwargs": kwargs, "requests": requests})
    proc = subprocess.run(
        [sys.executable, __file__, "--one", request],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"engine failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        _one(json.loads(a.one))
        return
    from actors.serve_app import cpu_engine_env, engine_kwargs
    from automem.llm.embedded import prepare_embedded_model
    from automem.serving.config import load_config

    model_dir = str(prepare_embedded_model(progress=lambda m: print(m, file=sys.stderr)))
    out: dict = {"benchmark": "vllm_cpu_settings", "requests": a.requests, "max_tokens": 64, "lora": True}
    for dtype, bind in SETTINGS:
        cfg = load_config(
            ROOT / "deploy/serve-embedded.yaml", [f"engine.dtype={dtype}", f"engine.cpu_threads_bind={bind}"]
        )
        kwargs = {**engine_kwargs(cfg), "max_num_seqs": 32}
        r = measure(model_dir, kwargs, cpu_engine_env(cfg), a.requests)
        out[f"{dtype}_{bind}_tokens_per_s"] = round(r["tokens_per_s"], 1)
        out[f"{dtype}_{bind}_ready_s"] = round(r["ready_s"], 1)
        print(f"{dtype}/{bind}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
    out["float32_vs_bfloat16"] = round(
        out["float32_auto_tokens_per_s"] / out["bfloat16_auto_tokens_per_s"], 2
    )
    out["bind_all_vs_auto_float32"] = round(
        out["float32_all_tokens_per_s"] / out["float32_auto_tokens_per_s"], 2
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
