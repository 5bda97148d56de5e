"""Helpers for the serve tests: a tiny trained LoRA adapter, two references (offline vLLM, transformers fp32), and
the `automem serve` CLI lifecycle run as subprocesses.

The offline engine runs in a subprocess (``offline_vllm.py``): ``vllm.LLM`` spawns its engine process and must be
created under ``if __name__ == "__main__"`` (docs/LOG.md, "platform facts").
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
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

    Runs ``offline_vllm.py`` in a subprocess with a small KV cache, so it can run beside the endpoint, with the
    embedded endpoint's dtype and thread binding (the thread count changes float reduction order, so greedy
    texts could differ otherwise).
    """
    from automem.serving.config import load_config
    from automem.serving.options import cpu_engine_env, engine_kwargs

    # The embedded config with vLLM's LoRA path on (it serves adapters as merged copies by default).
    cfg = load_config(ROOT / "deploy/serve-embedded.yaml", ["lora.serve_as=lora"])
    env = dict(os.environ, **cpu_engine_env(cfg), PYTHONPATH=str(ROOT))
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    request = json.dumps(
        {
            "model": str(model_dir),
            "adapter": str(adapter_dir),
            "messages": messages,
            "max_tokens": max_tokens,
            # The endpoint's engine arguments, with a shorter context and fewer adapter slots (less memory).
            "engine": {**engine_kwargs(cfg), "max_model_len": 1024, "max_loras": 2},
        }
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


_NO_TOKEN_CLIENT = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print('joined')"


def _cluster_processes(gcs_address: str) -> list[str]:
    """Processes of the Ray cluster at ``gcs_address`` (its raylet and workers name it on their command line)."""
    import psutil

    port = gcs_address.rsplit(":", 1)[1]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if gcs_address in cmdline or f"--gcs_server_port={port}" in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:120]}")
    return found


def run_cli_lifecycle(tmp: Path, *, ready_timeout_s: int = 480) -> dict:
    """Run the endpoint's CLI lifecycle as a user would, from a directory outside the repository; report what it saw.

    `automem serve` (background) on a free port and a Ray cluster of its own (``ray.address=local``), with
    automem's default Ray auth (RAY_AUTH_MODE unset: token) and a test token in RAY_AUTH_TOKEN; then ``--status``,
    a second `automem serve`, `automem chat "hello"`, a Ray client without the token (in parallel), ``--stop`` and
    ``--status``. State, cache (the prepared model linked in) and adapters live under ``tmp``. Whatever happens,
    the endpoint is stopped before this returns.
    """
    import httpx

    from actors.cluster import gcs_address
    from automem.llm.embedded import cache_dir, prepare_embedded_model
    from automem.serving.local_s3 import free_port, pid_alive, stop_process_group
    from automem.serving.state import read_state

    prepare_embedded_model()  # cached: the CLI finds it through the linked models folder
    cache = tmp / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    state_dir, work = tmp / "state", tmp / "elsewhere"
    work.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    drop = {"RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "AUTOMEM_ENDPOINT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        AUTOMEM_STATE_DIR=str(state_dir),
        AUTOMEM_CACHE_DIR=str(cache),
        AUTOMEM_API_KEY=f"cli-{secrets.token_hex(8)}",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        PYTHONUNBUFFERED="1",
    )

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args],
            env=env,
            cwd=work,  # not the repository root: the default config is found from the package
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def last_line(text: str) -> str:
        lines = text.strip().splitlines()
        return lines[-1] if lines else ""

    start = ["serve", "--set", f"server.port={port}", "--set", "ray.address=local"]
    start += ["--set", f"server.ready_timeout_s={ready_timeout_s}"]
    seen: dict = {"url": url}
    probe = None
    gcs = None
    try:
        t0 = time.monotonic()
        r = cli(*start, timeout=ready_timeout_s + 150)
        seen.update(serve_rc=r.returncode, serve_err=r.stderr[-3000:], serve_last_line=last_line(r.stdout))
        seen["ready_s"] = time.monotonic() - t0
        print(f"automem serve: ready after {seen['ready_s']:.0f} s (rc {r.returncode})")
        state = read_state(state_dir)
        if r.returncode != 0 or state is None:
            return seen
        gcs = state.ray_address
        seen["own_cluster"] = bool(state.started_cluster and gcs and gcs != gcs_address())
        if gcs:
            bare = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
            probe = subprocess.Popen(
                [sys.executable, "-c", _NO_TOKEN_CLIENT, gcs],
                env={**bare, "RAY_AUTH_MODE": "disabled", "HOME": str(tmp)},  # no ~/.ray/auth_token either
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        r = cli("serve", "--status")
        seen.update(status_rc=r.returncode, status=r.stdout + r.stderr)
        print(seen["status"])
        r = cli(*start)
        seen.update(second_rc=r.returncode, second_err=r.stderr, second_last_line=last_line(r.stdout))
        r = cli("chat", "--max-tokens", "8", "hello")
        seen.update(chat_rc=r.returncode, chat=r.stdout, chat_err=r.stderr)
        if probe is not None:
            try:
                out, _ = probe.communicate(timeout=90)
                seen.update(no_token_rc=probe.returncode, no_token=out)
            except subprocess.TimeoutExpired:
                seen.update(no_token_rc="timed out", no_token="no answer within 90 s")
        r = cli("serve", "--stop", timeout=150)
        seen.update(stop_rc=r.returncode, stop=r.stdout + r.stderr)
        r = cli("serve", "--status")
        seen.update(after_stop_rc=r.returncode, after_stop=r.stdout + r.stderr)
        try:
            seen["answers_after_stop"] = httpx.get(f"{url}/models", timeout=5).status_code > 0
        except httpx.HTTPError:
            seen["answers_after_stop"] = False
        deadline = time.monotonic() + 30
        while gcs and _cluster_processes(gcs) and time.monotonic() < deadline:
            time.sleep(1)
        seen["processes_left"] = _cluster_processes(gcs) if gcs else []
        return seen
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.wait()
        state = read_state(state_dir)
        if state is not None and pid_alive(state.pid):
            cli("serve", "--stop", timeout=150)
            if pid_alive(state.pid):
                stop_process_group(state.pid, 10)  # the serving process leads its own session
