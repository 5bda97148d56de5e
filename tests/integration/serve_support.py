"""Helpers for the serve tests: a tiny trained LoRA adapter and two references (offline vLLM, transformers fp32).

The offline engine runs in a subprocess (``offline_vllm.py``): ``vllm.LLM`` spawns its engine process and must be
created under ``if __name__ == "__main__"`` (FACTS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = [{"role": "user", "content": "You walked to a tree. What do you write in your notes?"}]
"""The prompt the adapter is trained on and compared with."""
TARGET = "APPEND notes.md tree found near the river\nDONE"
"""What the adapter learns to answer (memory-turn shaped), so its greedy output differs from the base's."""


def train_tiny_adapter(
    model_dir: Path, out_dir: Path, *, steps: int = 30, lr: float = 3e-3, seed: int = 0
) -> dict:
    """Train a PEFT LoRA (r=8, q_proj/v_proj) for ``steps`` steps on :data:`PROBE` -> :data:`TARGET`; save it.

    PEFT initialises B to zero, so an untrained adapter changes nothing: these steps are what make it differ.

    Returns:
        ``{"loss_first": ..., "loss_last": ...}``.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    )
    prompt_ids = tok.apply_chat_template(PROBE, add_generation_prompt=True, tokenize=True, return_dict=False)
    target_ids = tok(TARGET + tok.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([list(prompt_ids) + target_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100  # learn the answer only
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    losses = []
    peft_model.train()
    for _ in range(steps):
        loss = peft_model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    peft_model.save_pretrained(out_dir)
    return {"loss_first": losses[0], "loss_last": losses[-1]}


def transformers_greedy(
    model_dir: Path, adapter_dir: Path | None, messages: list[dict], max_new_tokens: int
) -> str:
    """Greedy completion in plain transformers, fp32, with the adapter merged into the weights (if given)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([list(prompt)]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.eos_token_id,
        )
    return tok.decode(out[0, len(prompt) :], skip_special_tokens=True)


def offline_vllm_greedy(
    model_dir: Path, adapter_dir: Path, messages: list[dict], max_tokens: int
) -> dict[str, str]:
    """Greedy chat completions from vLLM's offline engine, base and with the adapter: ``{"base", "adapter"}``.

    Runs ``offline_vllm.py`` in a subprocess with a small KV cache, so it can run beside the endpoint.
    """
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT))
    request = json.dumps(
        {"model": str(model_dir), "adapter": str(adapter_dir), "messages": messages, "max_tokens": max_tokens}
    )
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("offline_vllm.py")), request],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"offline vLLM failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
