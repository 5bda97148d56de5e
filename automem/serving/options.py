"""The serve config mapped onto Ray Serve LLM's options: vLLM engine arguments, the two deployments' settings and the
CPU engine's environment.

Plain dictionaries, no Ray here, so the mapping is unit-tested without a cluster; ``actors/serve_app.py`` hands them
to ``LLMConfig`` and ``serve.deployment``.
"""

from __future__ import annotations

import copy
from typing import Any

from automem.serving.config import GENERATED_ENGINE_KEYS, DeploymentConfig, IngressConfig, ServeConfig
from automem.serving.cpu import CpuChoice, machine_cpu_engine


def cpu_choice(cfg: ServeConfig) -> CpuChoice | None:
    """The CPU engine's dtype and thread binding on this machine (:mod:`automem.serving.cpu`); None on GPUs."""
    return machine_cpu_engine(cfg.engine) if cfg.accelerator == "cpu" else None


def engine_kwargs(
    cfg: ServeConfig, cpu: CpuChoice | None = None, *, lora: bool | None = None
) -> dict[str, Any]:
    """vLLM engine arguments from the config.

    On the CPU the dtype is ``cpu``'s (default: :func:`cpu_choice` on this machine), which resolves ``auto``.
    LoRA is on when the config serves adapters as LoRA (``lora`` overrides that: False for a merged copy's engine).

    Raises:
        ValueError: ``engine.extra`` sets a generated key (the config validator already refuses that; this guards
            configs built without validation).
    """
    eng = cfg.engine
    dtype = (cpu or machine_cpu_engine(eng)).dtype if cfg.accelerator == "cpu" else eng.dtype
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "max_model_len": eng.max_model_len,
        "tensor_parallel_size": eng.tensor_parallel_size,
        "enable_prefix_caching": eng.enable_prefix_caching,
    }
    for name in ("block_size", "max_num_seqs", "gpu_memory_utilization"):
        value = getattr(eng, name)
        if value is not None:
            kwargs[name] = value
    if cfg.serves_lora if lora is None else lora:
        kwargs.update(
            enable_lora=True, max_lora_rank=cfg.lora.max_rank, max_loras=cfg.lora.max_adapters_per_replica
        )
    clash = sorted((GENERATED_ENGINE_KEYS | kwargs.keys()) & eng.extra.keys())
    if clash:
        raise ValueError(f"engine.extra must not set {', '.join(clash)}: automem generates them")
    kwargs.update(eng.extra)
    return kwargs


def engine_deployment_config(deployment: DeploymentConfig) -> dict[str, Any]:
    """``LLMConfig.deployment_config`` for the engine (``LLMServer``) deployment.

    Serve LLM deep-merges it over its defaults, whose ``target_ongoing_requests`` is 1e9 (ray-project/ray#54696);
    the config schema makes ``target_ongoing_requests`` required whenever autoscaling is on.
    """
    out: dict[str, Any] = {"max_ongoing_requests": deployment.max_ongoing_requests}
    if deployment.autoscaling is not None:
        out["autoscaling_config"] = deployment.autoscaling.model_dump()
    else:
        out["num_replicas"] = deployment.num_replicas
    return out


def ingress_deployment_options(ingress: IngressConfig, defaults: dict[str, Any]) -> dict[str, Any]:
    """Options for the ingress deployment: Serve LLM's ``defaults`` with automem's replica settings applied.

    ``defaults`` is ``OpenAiIngress.get_deployment_options(...)``: an ``autoscaling_config`` with only
    ``target_ongoing_requests=1e9`` (one replica that never scales). With ``ingress.autoscaling`` set, its fields
    replace those; without, the ingress gets a fixed ``num_replicas`` (Serve refuses both at once).
    ``ray_actor_options`` is set by the caller (it holds the replicas' environment).
    """
    options = copy.deepcopy(defaults)
    if ingress.autoscaling is not None:
        options["autoscaling_config"] = {
            **(options.get("autoscaling_config") or {}),
            **ingress.autoscaling.model_dump(),
        }
        options.pop("num_replicas", None)
    else:
        options.pop("autoscaling_config", None)
        options["num_replicas"] = ingress.num_replicas
    if ingress.max_ongoing_requests is not None:
        options["max_ongoing_requests"] = ingress.max_ongoing_requests
    return options


def cpu_engine_env(cfg: ServeConfig, cpu: CpuChoice | None = None, *, merged: bool = False) -> dict[str, str]:
    """The CPU build's engine settings that vLLM reads from the environment (KV-cache size, thread binding);
    none for a GPU config. The binding is ``cpu``'s (default: :func:`cpu_choice` on this machine). ``merged``:
    for a merged copy's engine (``lora.merged_kv_cache_gib``)."""
    env: dict[str, str] = {}
    if cfg.accelerator != "cpu":
        return env
    kv = cfg.lora.merged_kv_cache_gib if merged else cfg.engine.cpu_kv_cache_gib
    if kv is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv)  # vLLM parses it with int()
    bind = (cpu or machine_cpu_engine(cfg.engine)).threads_bind
    if bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = bind
    return env


def merged_deployment_config(cfg: ServeConfig) -> dict[str, Any]:
    """``LLMConfig.deployment_config`` for a merged copy's engine: one replica (an adapter's traffic is a share of
    the base's), the base's ``max_ongoing_requests``. The replica actor reserves no CPU of its own (Serve LLM adds
    one by default to the engine's bundle), so a copy reserves ``lora.merged_num_cpus`` in all."""
    return {
        "max_ongoing_requests": cfg.deployment.max_ongoing_requests,
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0},
    }


def merged_placement(cfg: ServeConfig) -> dict[str, Any] | None:
    """``LLMConfig.placement_group_config`` for a merged copy's engine: ``lora.merged_num_cpus`` logical CPUs on
    the CPU (Serve LLM's default bundle is one whole CPU); None (Serve LLM's default) on GPUs."""
    if cfg.accelerator != "cpu":
        return None
    return {"bundles": [{"CPU": cfg.lora.merged_num_cpus}], "strategy": "PACK"}
