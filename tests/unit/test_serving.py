# python -m pytest tests/unit/test_serving.py -q
"""Serve config schema, the CPU engine's per-machine dtype and binding, the API-key middleware, the embedded model's
cache key, the adapter registry's checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from automem.serving import adapters
from automem.serving.auth import ApiKeyMiddleware
from automem.serving.config import ConfigError, ServeConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_configs_parse_strictly():
    embedded = load_config(ROOT / "deploy/serve-embedded.yaml")
    assert embedded.model.id == "smollm2-135m" and embedded.model.source == "embedded"
    assert embedded.accelerator == "cpu" and embedded.lora.enabled
    assert embedded.base_url == "http://127.0.0.1:8000/v1"
    gpu = load_config(ROOT / "deploy/serve-gpu.yaml")
    assert gpu.accelerator == "gpu" and gpu.engine.tensor_parallel_size == 2
    assert gpu.engine.enable_prefix_caching and gpu.lora.enabled
    assert gpu.deployment.autoscaling is not None and gpu.deployment.autoscaling.target_ongoing_requests > 0
    assert gpu.lora.registry.startswith("s3://")


def test_defaults_are_the_embedded_endpoint_on_loopback():
    cfg = ServeConfig()
    assert (cfg.server.host, cfg.server.port, cfg.model.id) == ("127.0.0.1", 8000, "smollm2-135m")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"deployment": {"min_replica": 2}}, "deployment.min_replica"),
        ({"deployment": {"autoscaling": {"min_replicas": 1, "max_replicas": 4}}}, "target_ongoing_requests"),
        ({"engine": {"max_model_len": "long"}}, "engine.max_model_len"),
        ({"engine": {"tensor_parallel_size": 2}}, "tensor_parallel_size"),
        ({"lora": {"registry": "/tmp/adapters"}}, "lora"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"modle": {"id": "x"}}, "modle"),
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert field in str(exc.value)


def test_overrides_apply_yaml_scalars_and_are_checked(tmp_path):
    cfg = load_config(ROOT / "deploy/serve-embedded.yaml", ["server.port=8123", "lora.enabled=false"])
    assert cfg.server.port == 8123 and not cfg.lora.enabled
    with pytest.raises(ConfigError, match="engine.bogus"):
        load_config(None, ["engine.bogus=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["server.port"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_config_is_frozen():
    cfg = ServeConfig()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError for frozen instances
        cfg.server.port = 1  # type: ignore[misc]


def _call(mw: ApiKeyMiddleware, headers: dict[str, str], path: str = "/v1/models") -> int:
    seen: list[int] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw.app = app

    async def send(message):
        if message["type"] == "http.response.start":
            seen.append(message["status"])

    scope = {
        "type": "http",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(mw(scope, None, send))
    return seen[0]


def test_api_key_middleware():
    mw = ApiKeyMiddleware(None, api_key="s3cret")
    assert _call(mw, {}) == 401
    assert _call(mw, {"Authorization": "Bearer nope"}) == 401
    assert _call(mw, {"Authorization": "Bearer s3cret"}) == 200
    assert _call(mw, {"x-api-key": "s3cret"}) == 200
    assert _call(mw, {}, path="/-/healthz") == 200
    assert _call(ApiKeyMiddleware(None, api_key=None), {}) == 200


def test_adapter_names_and_folders(tmp_path):
    assert adapters.check_name("memory-v1.2") == "memory-v1.2"
    for bad in ("a:b", "a/b", "", "-x"):
        with pytest.raises(ValueError):
            adapters.check_name(bad)
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        (tmp_path / "adapter_config.json").write_text("{}")
        adapters.check_adapter_dir(tmp_path)
    assert adapters.split_s3("s3://bucket/a/b/") == ("bucket", "a/b")


def test_local_adapter_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in adapters.REQUIRED_FILES:
        (src / f).write_text("x")
    root = tmp_path / "registry"
    adapters.save_local(src, "one", root=root)
    adapters.save_local(src, "one", root=root)  # replacing is the library's default
    with pytest.raises(adapters.AdapterExists, match="--replace"):
        adapters.save_local(src, "one", root=root, replace=False)
    assert adapters.list_local(root) == ["one"]


def test_embedded_model_cache_key(tmp_path, monkeypatch):
    from automem.llm import embedded

    monkeypatch.setenv("AUTOMEM_CACHE_DIR", str(tmp_path))
    assert embedded.cache_dir() == tmp_path
    gguf = embedded.find_gguf()
    folder = embedded.prepared_dir(gguf)
    assert folder.parent == tmp_path / "models" and folder.name.startswith("smollm2-135m-")
    assert not embedded.is_prepared(folder)


def test_builtin_defaults_equal_the_embedded_yaml():
    # `automem serve` with no config file must serve exactly what deploy/serve-embedded.yaml describes.
    assert load_config(ROOT / "deploy/serve-embedded.yaml") == ServeConfig()


def test_default_config_is_found_from_the_package_not_the_current_directory(tmp_path, monkeypatch):
    from automem.serving.config import default_config_path
    from automem.serving.endpoint import config_path as _config_path

    monkeypatch.chdir(tmp_path)
    assert default_config_path() == ROOT / "deploy/serve-embedded.yaml"
    assert _config_path(None) == str(ROOT / "deploy/serve-embedded.yaml")
    assert _config_path("mine.yaml") == str(tmp_path / "mine.yaml")  # the background process may chdir


def test_missing_default_config_is_a_clear_error(tmp_path, monkeypatch):
    from automem.serving import config

    monkeypatch.setattr(config, "DEFAULT_CONFIG_NAME", "deploy/no-such.yaml")
    with pytest.raises(ConfigError, match="--config"):
        config.default_config_path()


@pytest.mark.parametrize("value", ["1.5", "0", "-1"])
def test_cpu_kv_cache_is_whole_gib(value):
    # vLLM parses VLLM_CPU_KVCACHE_SPACE with int(): a fraction would fail only when the replica starts.
    with pytest.raises(ConfigError, match="engine.cpu_kv_cache_gib"):
        parse_config({}, [f"engine.cpu_kv_cache_gib={value}"])
    assert parse_config({}, ["engine.cpu_kv_cache_gib=3"]).engine.cpu_kv_cache_gib == 3


def test_block_size_is_validated_and_reaches_the_engine():
    from automem.serving.options import engine_kwargs

    assert engine_kwargs(ServeConfig())["block_size"] == 32
    assert "block_size" not in engine_kwargs(parse_config({}, ["engine.block_size=null"]))
    for bad in ("0", "8", "24"):  # not a positive multiple of 16
        with pytest.raises(ConfigError, match="engine.block_size"):
            parse_config({}, [f"engine.block_size={bad}"])
    with pytest.raises(ConfigError, match="multiple of 32"):  # vLLM's CPU attention: MultipleOf(32)
        parse_config({}, ["engine.block_size=48"])
    gpu = load_config(ROOT / "deploy/serve-gpu.yaml", ["engine.block_size=48"])
    assert engine_kwargs(gpu)["block_size"] == 48


def test_engine_extra_may_not_override_generated_keys():
    from automem.serving.options import engine_kwargs

    with pytest.raises(ConfigError) as exc:
        parse_config({"engine": {"extra": {"enable_lora": False, "max_model_len": 8, "seed": 1}}})
    assert "engine.extra" in str(exc.value)
    assert "enable_lora, max_model_len" in str(exc.value)
    kwargs = engine_kwargs(parse_config({"engine": {"extra": {"seed": 1}}, "lora": {"serve_as": "lora"}}))
    assert kwargs["seed"] == 1 and kwargs["enable_lora"] is True


RAY_INGRESS_DEFAULTS = {
    "max_ongoing_requests": 10**9,
    "autoscaling_config": {"target_ongoing_requests": 10**9},
}
"""What ``OpenAiIngress.get_deployment_options`` returns in Ray 2.60 (one replica that never scales)."""


def test_ingress_options_map_replicas_and_autoscaling():
    from automem.serving.options import engine_deployment_config, ingress_deployment_options

    embedded = load_config(ROOT / "deploy/serve-embedded.yaml")
    fixed = ingress_deployment_options(embedded.deployment.ingress, RAY_INGRESS_DEFAULTS)
    assert fixed == {"max_ongoing_requests": 10**9, "num_replicas": 1}
    assert RAY_INGRESS_DEFAULTS["autoscaling_config"] == {"target_ongoing_requests": 10**9}  # not mutated

    gpu = load_config(ROOT / "deploy/serve-gpu.yaml")
    auto = ingress_deployment_options(gpu.deployment.ingress, RAY_INGRESS_DEFAULTS)
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"]["target_ongoing_requests"] == 256
    assert (auto["autoscaling_config"]["min_replicas"], auto["autoscaling_config"]["max_replicas"]) == (2, 8)
    limited = parse_config(
        {}, ["deployment.ingress.num_replicas=3", "deployment.ingress.max_ongoing_requests=64"]
    )
    opts = ingress_deployment_options(limited.deployment.ingress, RAY_INGRESS_DEFAULTS)
    assert opts["num_replicas"] == 3 and opts["max_ongoing_requests"] == 64

    engine = engine_deployment_config(gpu.deployment)
    assert engine["autoscaling_config"]["target_ongoing_requests"] == 64 and "num_replicas" not in engine
    assert engine_deployment_config(embedded.deployment) == {"max_ongoing_requests": 256, "num_replicas": 1}
    with pytest.raises(ConfigError, match="must not exceed max_ongoing_requests"):
        parse_config({}, ["deployment.ingress.max_ongoing_requests=8"] + _ingress_auto(target=64))


def _ingress_auto(target: float) -> list[str]:
    return [f"deployment.ingress.autoscaling={{target_ongoing_requests: {target}, max_replicas: 2}}"]


def test_api_key_is_not_kept_by_the_middleware():
    import pickle

    from automem.serving.auth import HashedKey

    key = "k-" + "x7" * 16
    mw = ApiKeyMiddleware(None, api_key=key)
    assert key.encode() not in pickle.dumps(mw)
    assert _call(mw, {"Authorization": f"Bearer {key}"}) == 200
    assert _call(mw, {"Authorization": f"Bearer {key}x"}) == 401
    hashed = HashedKey.of(key)
    assert key.encode() not in pickle.dumps(hashed) and hashed.matches(key) and not hashed.matches("")
    assert HashedKey.of(key).salt != hashed.salt  # salted: equal keys do not give equal digests


def test_serve_conflicts_are_named():
    from automem.serving.guard import ServeApp, ServeInstance, serve_conflict

    def check(running):
        return serve_conflict(running, app_name="automem-llm", host="127.0.0.1", port=8001)

    assert check(None) is None  # Serve not started: ours to start
    assert check(ServeInstance("127.0.0.1", 8001)) is None  # Serve up, nothing deployed
    other_port = check(ServeInstance("127.0.0.1", 8000))
    assert other_port and "127.0.0.1:8000" in other_port and "server.port=8000" in other_port
    assert "listens on 0.0.0.0:8001" in (check(ServeInstance("0.0.0.0", 8001)) or "")
    same_name = check(ServeInstance("127.0.0.1", 8001, {"automem-llm": ServeApp("RUNNING", "/")}))
    assert same_name and "'automem-llm'" in same_name and "did not start" in same_name
    same_route = check(ServeInstance("127.0.0.1", 8001, {"chatbot": ServeApp("RUNNING", "/")}))
    assert same_route and "'chatbot'" in same_route
    assert check(ServeInstance("127.0.0.1", 8001, {"chatbot": ServeApp("RUNNING", "/chat")})) is None


# CPU flags as /proc/cpuinfo and lscpu list them (the parts that matter, plus common neighbours).
_BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
AVX2_ONLY = _BASE.split()
AVX512_NO_BF16 = (_BASE + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni").split()
"""The developers' machine of 2026-12-01: AVX-512 with VNNI, no AVX512_BF16/AMX (float32 2.1x, docs/LOG.md)."""
AVX512_BF16 = (_BASE + " avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16").split()
"""This session's machine (KVM Xeon, lscpu: avx512_bf16, no amx flags)."""
AMX = AVX512_BF16 + ["amx_bf16", "amx_tile", "amx_int8"]
"""A Sapphire Rapids host with AMX exposed."""


@pytest.mark.parametrize(
    ("flags", "dtype", "reason_word"),
    [
        (AVX512_NO_BF16, "float32", "without avx512_bf16"),
        (AVX512_BF16, "bfloat16", "avx512_bf16"),
        (AMX, "bfloat16", "AMX"),
        (AVX2_ONLY, "float32", "AVX2"),
        ([], "float32", "unknown"),
    ],
    ids=["avx512-no-bf16", "avx512-bf16", "amx", "avx2-only", "no-flags"],
)
def test_auto_dtype_follows_the_cpu(flags, dtype, reason_word):
    from automem.serving.cpu import choose_cpu_engine

    choice = choose_cpu_engine(flags, [0, 1])
    assert choice.dtype == dtype
    assert reason_word in choice.dtype_reason
    assert "\n" not in choice.line() and choice.line().startswith(f"CPU engine: {dtype}, threads 0-1 - ")


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_a_forced_dtype_overrides_auto_on_every_cpu(forced):
    from automem.serving.cpu import choose_cpu_engine
    from automem.serving.options import engine_kwargs

    for flags in (AVX512_NO_BF16, AVX512_BF16, AMX, AVX2_ONLY):
        choice = choose_cpu_engine(flags, [0, 1], dtype=forced)
        assert choice.dtype == forced and "set in the config" in choice.dtype_reason
    assert (
        engine_kwargs(parse_config({}, [f"engine.dtype={forced}"]))["dtype"] == forced
    )  # on this machine too


def test_thread_binding_lists_the_usable_cpus():
    from automem.serving.cpu import choose_threads_bind

    assert choose_threads_bind([0, 1]) == ("0-1", choose_threads_bind([1, 0])[1])
    assert choose_threads_bind([5, 2, 3, 9, 10, 11])[0] == "2-3,5,9-11"  # a cpuset need not start at 0
    assert choose_threads_bind([4])[0] == "4"
    assert choose_threads_bind([0, 1], "auto")[0] is None  # vLLM's own binding
    assert choose_threads_bind([0, 1], "0-7|8-15") == (
        "0-7|8-15",
        "engine.cpu_threads_bind=0-7|8-15 set in the config",
    )


def test_cpu_choice_reaches_the_engine_arguments_and_environment():
    from automem.serving.cpu import choose_cpu_engine
    from automem.serving.options import cpu_engine_env, engine_kwargs

    cfg = ServeConfig()
    bf16 = choose_cpu_engine(AVX512_BF16, [2, 3], dtype=cfg.engine.dtype)
    fp32 = choose_cpu_engine(AVX512_NO_BF16, [0, 1], dtype=cfg.engine.dtype)
    assert engine_kwargs(cfg, bf16)["dtype"] == "bfloat16" and engine_kwargs(cfg, fp32)["dtype"] == "float32"
    assert cpu_engine_env(cfg, bf16)["VLLM_CPU_OMP_THREADS_BIND"] == "2-3"
    assert engine_kwargs(cfg)["dtype"] in (
        "float32",
        "bfloat16",
    )  # this machine's choice: never vLLM's "auto"
    gpu = load_config(ROOT / "deploy/serve-gpu.yaml", ["engine.dtype=auto"])
    assert engine_kwargs(gpu)["dtype"] == "auto" and cpu_engine_env(gpu) == {}  # vLLM's own on GPUs


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from automem.serving.cpu import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
    )
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_dtype_auto_is_the_embedded_default_and_a_typo_is_rejected():
    assert load_config(ROOT / "deploy/serve-embedded.yaml").engine.dtype == "auto"
    assert ServeConfig().engine.dtype == "auto"
    assert parse_config({"engine": {"dtype": "auto"}}).engine.dtype == "auto"
    for typo in ("bf16", "bfloat61", "Auto"):
        with pytest.raises(ConfigError, match="engine.dtype") as exc:
            parse_config({"engine": {"dtype": typo}})
        assert "'auto'" in str(exc.value)
