"""vLLM CPU engine settings side by side: dtype and thread binding, on the embedded model with LoRA on.

    .venv/bin/python benchmarks/vllm_cpu_settings.py                 # 4 settings, about 6 minutes on 2 cores
    .venv/bin/python benchmarks/vllm_cpu_settings.py --requests 32

Each setting runs the offline ``vllm.LLM`` engine in a fresh process through the serving benchmark's runner
(``benchmarks/serving.py``: its prompts, exactly 64 new tokens each, at most 32 batched), with the embedded
config's engine arguments (``deploy/serve-embedded.yaml``) except the one varied. Prints one JSON line with
generated tokens/s and engine start time per setting, and the ratios that back the embedded config's choices:
- ``float32_vs_bfloat16``: float32 over bfloat16 with vLLM's default binding (``auto``);
  ``float32_vs_bfloat16_all``: the same with every core bound (the embedded config's binding);
- ``bind_all_vs_auto_float32`` (and ``_bfloat16``): model threads on every core over vLLM's ``auto`` (which keeps a
  core per engine for its scheduler process).
It also reports what the embedded config's ``engine.dtype: auto`` chose on this machine and why
(``auto_choice``: the choice of ``automem.serving.cpu`` with its one-line reason), the CPU flags that choice reads,
torch's view of the CPU (``torch.backends.cpu.get_cpu_capability()``), and ``auto_dtype_was_faster``: whether the
chosen dtype measured faster than the other one with every core bound. The machines differ (docs/LOG.md), and so
does the dtype ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = [("bfloat16", "auto"), ("float32", "auto"), ("bfloat16", "all"), ("float32", "all")]
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
"""The flags that bear on the dtype choice, reported as this machine has them."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64)
    a = p.parse_args()
    import torch
    from serving import MAX_TOKENS, offline_run

    from automem.llm.embedded import prepare_embedded_model
    from automem.serving.config import load_config
    from automem.serving.cpu import cpu_flags
    from automem.serving.options import cpu_choice, cpu_engine_env, engine_kwargs

    model_dir = prepare_embedded_model(progress=lambda m: print(m, file=sys.stderr))
    auto = cpu_choice(load_config(ROOT / "deploy/serve-embedded.yaml"))
    assert auto is not None  # the embedded config runs on the CPU
    print(auto.line(), file=sys.stderr)
    out: dict = {
        "benchmark": "vllm_cpu_settings",
        "requests": a.requests,
        "max_tokens": MAX_TOKENS,
        "lora": True,
        "auto_choice": {"dtype": auto.dtype, "threads_bind": auto.threads_bind, "reason": auto.reason},
        "cpu_flags": sorted(set(CPU_FLAGS) & cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    for dtype, bind in SETTINGS:
        overrides = [f"engine.dtype={dtype}", f"engine.cpu_threads_bind={bind}"]
        cfg = load_config(ROOT / "deploy/serve-embedded.yaml", overrides)
        r = offline_run(model_dir, engine_kwargs(cfg), a.requests, cpu_engine_env(cfg))
        out[f"{dtype}_{bind}_tokens_per_s"] = round(r["tokens_per_s"], 1)
        out[f"{dtype}_{bind}_ready_s"] = round(r["ready_s"], 1)
        print(f"{dtype}/{bind}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
    out["float32_vs_bfloat16"] = round(
        out["float32_auto_tokens_per_s"] / out["bfloat16_auto_tokens_per_s"], 2
    )
    out["float32_vs_bfloat16_all"] = round(
        out["float32_all_tokens_per_s"] / out["bfloat16_all_tokens_per_s"], 2
    )
    out["bind_all_vs_auto_float32"] = round(
        out["float32_all_tokens_per_s"] / out["float32_auto_tokens_per_s"], 2
    )
    out["bind_all_vs_auto_bfloat16"] = round(
        out["bfloat16_all_tokens_per_s"] / out["bfloat16_auto_tokens_per_s"], 2
    )
    other = "bfloat16" if auto.dtype == "float32" else "float32"
    out["auto_dtype_was_faster"] = out[f"{auto.dtype}_all_tokens_per_s"] > out[f"{other}_all_tokens_per_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
