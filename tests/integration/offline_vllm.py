"""Greedy chat completions from vLLM's offline engine, base model and one LoRA adapter (a reference for tests).

Usage: python tests/integration/offline_vllm.py '{"model": DIR, "adapter": DIR, "messages": [...], "max_tokens": N,
"engine": {vLLM engine arguments}}'
Prints ``RESULT {"base": TEXT, "adapter": TEXT}`` as its last line. A script, because ``vllm.LLM`` spawns its engine
process and must be created under ``if __name__ == "__main__"`` (docs/LOG.md, "platform facts").
"""

from __future__ import annotations

import json
import sys


def main(request: dict) -> dict[str, str]:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=request["model"], **request["engine"])
    # No per-request seed: on the CPU build it kills the engine ("CPU Generator does not use offset"; docs/LOG.md,
    # "platform facts").
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
