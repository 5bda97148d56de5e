"""Greedy chat completions from vLLM's offline engine, base model and one LoRA adapter (a reference for tests).

Usage: python tests/integration/offline_vllm.py '{"model": DIR, "adapter": DIR, "messages": [...], "max_tokens": N,
"dtype": "float32", "block_size": 32}'
Prints ``RESULT {"base": TEXT, "adapter": TEXT}`` as its last line. A script, because ``vllm.LLM`` spawns its engine
process and must be created under ``if __name__ == "__main__"`` (FACTS.md).
"""

from __future__ import annotations

import json
import sys


def main(request: dict) -> dict[str, str]:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(
        model=request["model"],
        dtype=request["dtype"],
        block_size=request["block_size"],
        max_model_len=1024,
        enable_lora=True,
        max_lora_rank=8,
        max_loras=2,
        enable_prefix_caching=True,
    )
    # No per-request seed: on the CPU build it kills the engine ("CPU Generator does not use offset", FACTS.md).
    params = SamplingParams(temperature=0.0, max_tokens=request["max_tokens"])
    base = llm.chat(request["messages"], params, use_tqdm=False)[0].outputs[0].text
    adapted = (
        llm.chat(
            request["messages"],
            params,
            lora_request=LoRARequest("probe", 1, request["adapter"]),
            use_tqdm=False,
        )[0]
        .outputs[0]
        .text
    )
    return {"base": base, "adapter": adapted}


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(result), flush=True)
