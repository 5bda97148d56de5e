"""The Ray Serve LLM app (vLLM behind an OpenAI-compatible API) built from automem's serve config.

:func:`start_endpoint` runs it on the connected Ray cluster: prepares the embedded model if asked, starts the local
S3 server holding the adapter registry when LoRA uses the embedded one, deploys, and waits until a chat request
succeeds. The same code serves SmolLM2 on a laptop's CPU and a tensor-parallel model on a GPU cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve

from actors.cluster import gcs_address
from automem import env_vars
from automem.llm.embedded import prepare_embedded_model
from automem.serving import adapters
from automem.serving.auth import ApiKeyMiddleware, HashedKey
from automem.serving.config import EMBEDDED, ServeConfig
from automem.serving.cpu import CpuChoice
from automem.serving.guard import ServeApp, ServeInstance, serve_conflict
from automem.serving.local_s3 import LocalS3, start_local_s3
from automem.serving.options import (
    cpu_choice,
    cpu_engine_env,
    engine_deployment_config,
    engine_kwargs,
    ingress_deployment_options,
)

APP_NAME = "automem-llm"
ROUTE_PREFIX = "/"
Progress = Callable[[str], None]


def replica_env(cfg: ServeConfig, local_s3: LocalS3 | None, cpu: CpuChoice | None = None) -> dict[str, str]:
    """Environment the engine and ingress replicas need: S3 endpoint and credentials, the CPU KV-cache size and
    thread binding (``cpu``'s; default: chosen on this machine).

    They must reach the replicas through ``runtime_env``; the driver's environment is not theirs (docs/LOG.md, "platform facts").
    """
    env = dict(local_s3.env) if local_s3 else {}
    if not local_s3 and cfg.lora.enabled:
        env.update(
            env_vars.forwarded(
                env_vars.AWS_ENDPOINT_URL,
                env_vars.AWS_ACCESS_KEY_ID,
                env_vars.AWS_SECRET_ACCESS_KEY,
                env_vars.AWS_DEFAULT_REGION,
            )
        )
    env.update(cpu_engine_env(cfg, cpu))
    return env


def llm_config(
    cfg: ServeConfig,
    model_source: str,
    *,
    env: dict[str, str],
    registry_uri: str | None = None,
    cpu: CpuChoice | None = None,
):
    """Ray Serve LLM's ``LLMConfig`` for the config (no Ray cluster needed to build it); on the CPU, with
    ``cpu``'s dtype (default: chosen on this machine)."""
    from ray.serve.llm import LLMConfig

    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": cfg.model.id, "model_source": model_source},
        "engine_kwargs": engine_kwargs(cfg, cpu),
        "deployment_config": engine_deployment_config(cfg.deployment),
        "runtime_env": {"env_vars": env} if env else None,
    }
    if cfg.accelerator == "cpu":
        kwargs["accelerator_config"] = {"kind": "cpu"}
    elif cfg.accelerator_type:
        kwargs["accelerator_type"] = cfg.accelerator_type
    if cfg.lora.enabled:
        kwargs["lora_config"] = {
            "dynamic_lora_loading_path": registry_uri,
            "max_num_adapters_per_replica": cfg.lora.max_adapters_per_replica,
        }
    return LLMConfig(**kwargs)


def build_app(
    cfg: ServeConfig, config: Any, *, env: dict[str, str], api_key: str | None
) -> serve.Application:
    """The OpenAI app: one ``LLMServer`` deployment behind an ``OpenAiIngress`` with the API-key check in front.

    This is ``ray.serve.llm.build_openai_app`` with two differences: the ingress's FastAPI app gets
    :class:`ApiKeyMiddleware`, which ``build_openai_app`` offers no hook for, and the ingress's replicas and
    autoscaling come from ``deployment.ingress``. It follows the composition shown in
    ``ray.serve.llm.ingress.OpenAiIngress``'s docstring. The app is pickled into the deployment definition, so
    the middleware gets only a salted digest of ``api_key`` (:class:`HashedKey`), never the key.
    """
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import init as init_ingress_fastapi
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    server = build_llm_deployment(config)
    # Ray's own app, with its exception handling, CORS and request-id middleware; ours is added last, so it runs
    # first (Starlette middleware runs last-in, first-out).
    fastapi_app = init_ingress_fastapi()
    fastapi_app.add_middleware(ApiKeyMiddleware, key=HashedKey.of(api_key) if api_key else None)
    options = ingress_deployment_options(
        cfg.deployment.ingress, OpenAiIngress.get_deployment_options([config])
    )
    options["ray_actor_options"] = {
        "num_cpus": cfg.deployment.ingress.num_cpus,
        **({"runtime_env": {"env_vars": env}} if env else {}),  # the ingress lists adapters from S3 itself
    }
    ingress = make_fastapi_ingress(OpenAiIngress, app=fastapi_app)
    lora_paths = {config.model_id: config.lora_config.dynamic_lora_loading_path} if config.lora_config else {}
    return serve.deployment(ingress, **options).bind(
        llm_deployments={config.model_id: server},
        model_cards={config.model_id: to_model_metadata(config.model_id, config)},
        lora_paths=lora_paths,
    )


@dataclass
class RunningEndpoint:
    """An endpoint this process deployed, and what it started beside it."""

    base_url: str
    model_id: str
    registry: adapters.AdapterRegistry | None = None
    local_s3: LocalS3 | None = None
    ready_s: float = 0.0
    app_name: str = APP_NAME
    """The Serve application this process deployed (the only one :func:`stop_endpoint` deletes)."""


class EndpointConflict(RuntimeError):
    """Deploying would replace or shadow another endpoint on the same Ray cluster; nothing was changed."""


def running_serve() -> ServeInstance | None:
    """The Serve instance running on the connected cluster (HTTP host/port and apps), None if Serve is not up."""
    from ray.serve.context import _get_global_client

    # No public API reports the running instance's HTTP options; the controller client holds them.
    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    details = client.get_serve_details()
    http = details.get("http_options") or {}
    apps = {
        name: ServeApp(status=str(app.get("status")), route_prefix=app.get("route_prefix"))
        for name, app in (details.get("applications") or {}).items()
    }
    return ServeInstance(host=http.get("host"), port=http.get("port"), apps=apps)


def check_no_conflict(cfg: ServeConfig) -> None:
    """Refuse to deploy over an app this process did not create, or on a Serve that listens elsewhere.

    Raises:
        EndpointConflict: with what runs and what to do.
    """
    gcs = gcs_address()
    where = f"the Ray cluster at {gcs}" if gcs else "this Ray cluster"
    reason = serve_conflict(
        running_serve(),
        app_name=APP_NAME,
        host=cfg.server.host,
        port=cfg.server.port,
        route_prefix=ROUTE_PREFIX,
        where=where,
    )
    if reason:
        raise EndpointConflict(reason)


def start_endpoint(
    cfg: ServeConfig,
    *,
    progress: Progress = print,
    log_dir: Path | None = None,
    api_key: str | None = None,
    adapters_root: Path | None = None,
) -> RunningEndpoint:
    """Deploy the app on the connected Ray cluster and wait until a chat request succeeds.

    Args:
        cfg: the serve config.
        progress: receives one-line progress messages.
        log_dir: where the local S3 server logs (None: discarded).
        api_key: required bearer key; default ``AUTOMEM_API_KEY`` (None or empty: no check).
        adapters_root: the embedded registry's local folder to serve (default: ``<cache dir>/adapters``).

    Raises:
        EndpointConflict: Serve on this cluster already runs an app of this name or at this route, or listens on
            another host/port (nothing is changed then).
        RuntimeError: a required key is missing, or the app failed or did not answer in time (the app deployed
            here is deleted again).
    """
    t0 = time.monotonic()
    api_key = api_key if api_key is not None else env_vars.AUTOMEM_API_KEY.get()
    if cfg.server.require_api_key and not api_key:
        raise RuntimeError("server.require_api_key is set but AUTOMEM_API_KEY is not")
    check_no_conflict(cfg)  # before anything is started, so a refusal leaves everything as it was
    cpu = cpu_choice(cfg)  # once, so the log line, the engine's dtype and its binding agree
    if cpu is not None:
        progress(cpu.line())
    source = cfg.model.source
    if source == EMBEDDED:
        source = str(prepare_embedded_model(progress=progress))
    local_s3 = registry = None
    deployed = False
    try:
        if cfg.lora.enabled:
            if cfg.lora.registry == EMBEDDED:
                local_s3 = start_local_s3(log_dir / "local-s3.log" if log_dir else None)
                progress(f"local S3 server for the adapter registry on {local_s3.url}")
                uri = f"s3://{adapters.EMBEDDED_BUCKET}/{adapters.EMBEDDED_PREFIX}"
                registry = adapters.AdapterRegistry(uri, endpoint_url=local_s3.url, credentials=local_s3.env)
                registry.ensure_bucket()
                names = adapters.sync_local(registry, adapters_root)
                progress(f"adapters: {', '.join(names) if names else 'none yet'} ({registry.uri})")
            else:
                registry = adapters.AdapterRegistry(cfg.lora.registry)
        env = replica_env(cfg, local_s3, cpu)
        config = llm_config(cfg, source, env=env, registry_uri=registry.uri if registry else None, cpu=cpu)
        app = build_app(cfg, config, env=env, api_key=api_key)
        serve.start(http_options={"host": cfg.server.host, "port": cfg.server.port})
        check_no_conflict(cfg)  # again: another process may have deployed while the S3 server started
        progress(
            f"deploying {cfg.model.id} on Ray Serve LLM (vLLM, {cfg.accelerator}); about 100 s on a laptop CPU"
        )
        deployed = True
        _run_with_heartbeat(app, progress, t0)
        wait_until_ready(cfg.base_url, cfg.model.id, api_key=api_key, timeout_s=cfg.server.ready_timeout_s)
    except BaseException:
        if deployed:
            _delete_app(APP_NAME)  # ours: the checks above found no app of that name
        if local_s3:
            local_s3.stop()
        raise
    ready = time.monotonic() - t0
    progress(f"ready after {ready:.0f} s")
    return RunningEndpoint(cfg.base_url, cfg.model.id, registry=registry, local_s3=local_s3, ready_s=ready)


def _run_with_heartbeat(app: serve.Application, progress: Progress, t0: float) -> None:
    """``serve.run`` (which waits until the app is running) with a progress line every 15 s."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(15.0):
            try:
                status = serve.status().applications[APP_NAME].status
            except Exception:  # noqa: BLE001 - a heartbeat must never fail the start
                status = "DEPLOYING"
            progress(f"  ... {status.lower()} ({time.monotonic() - t0:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        serve.run(app, name=APP_NAME, route_prefix=ROUTE_PREFIX)
    finally:
        done.set()


def wait_until_ready(base_url: str, model_id: str, *, api_key: str | None, timeout_s: float = 600.0) -> None:
    """Poll until a one-token chat completion for ``model_id`` answers 200.

    Raises:
        RuntimeError: not ready within ``timeout_s`` (the last status or error is in the message).
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=60.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1.0)
    raise RuntimeError(f"{base_url} did not answer a chat request within {timeout_s:.0f} s ({last})")


def _delete_app(name: str) -> None:
    if ray.is_initialized():
        try:
            serve.delete(name)
        except Exception:  # noqa: BLE001 - already gone, or Serve is down
            pass


def stop_endpoint(endpoint: RunningEndpoint | None) -> None:
    """Delete the app ``endpoint`` deployed and stop its local S3 server; leaves the Ray cluster to whoever
    started it. ``None`` (nothing was deployed) deletes nothing: an app of the same name is someone else's."""
    if endpoint is None:
        return
    _delete_app(endpoint.app_name)
    if endpoint.local_s3 is not None:
        endpoint.local_s3.stop()
