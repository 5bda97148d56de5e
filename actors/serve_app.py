"""The Ray Serve LLM app (vLLM behind an OpenAI-compatible API) built from automem's serve config.

:func:`start_endpoint` runs it on the connected Ray cluster: prepares the embedded model if asked, starts the local
S3 server holding the adapter registry when adapters use the embedded one, deploys, and waits until a chat request
succeeds. The same code serves SmolLM2 on a laptop's CPU and a tensor-parallel model on a GPU cluster.
:func:`actors.serve_builder.app_builder` returns the same app (:func:`endpoint_app` builds it for both) to Serve's
own deployers: ``serve run actors.serve_builder:app_builder config=deploy/serve-gpu.yaml``, or a Serve config
file's ``import_path``/``args`` (the KubeRay RayService that ``automem deploy render --target kuberay`` writes).

Adapters are served by name, ``<base id>:<name>``, in one of two ways (``lora.serve_as``): by the base engine's
LoRA (loaded from the registry on first use), or as merged copies, one ``LLMServer`` deployment each in the same
app behind the same ingress, kept in step with the registry by :class:`MergedCopies` (a newly published adapter is
merged and the app redeployed with one more model; the base engine's deployment keeps its version and replica).
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from automem.serving.merge import merge_adapter
from automem.serving.options import (
    cpu_choice,
    cpu_engine_env,
    engine_deployment_config,
    engine_kwargs,
    ingress_deployment_options,
    merged_deployment_config,
    merged_placement,
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
    """Ray Serve LLM's ``LLMConfig`` of the base model (no Ray cluster needed to build it); on the CPU, with
    ``cpu``'s dtype (default: chosen on this machine). Its engine applies adapters only when the config serves
    them as LoRA (``lora.serve_as: lora``)."""
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
    if cfg.serves_lora:
        kwargs["lora_config"] = {
            "dynamic_lora_loading_path": registry_uri,
            "max_num_adapters_per_replica": cfg.lora.max_adapters_per_replica,
        }
    return LLMConfig(**kwargs)


def merged_llm_config(
    cfg: ServeConfig, name: str, merged_dir: str, *, env: dict[str, str], cpu: CpuChoice | None = None
):
    """``LLMConfig`` of adapter ``name``'s merged copy, served as ``<base id>:<name>``: the base's engine
    arguments without LoRA, one replica, ``lora.merged_kv_cache_gib`` of KV cache and ``lora.merged_num_cpus``
    logical CPUs on the CPU build."""
    from ray.serve.llm import LLMConfig

    env = {**env, **cpu_engine_env(cfg, cpu, merged=True)}
    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": f"{cfg.model.id}:{name}", "model_source": merged_dir},
        "engine_kwargs": engine_kwargs(cfg, cpu, lora=False),
        "deployment_config": merged_deployment_config(cfg),
        "runtime_env": {"env_vars": env} if env else None,
    }
    if cfg.accelerator == "cpu":
        kwargs["accelerator_config"] = {"kind": "cpu"}
        kwargs["placement_group_config"] = merged_placement(cfg)
    elif cfg.accelerator_type:
        kwargs["accelerator_type"] = cfg.accelerator_type
    return LLMConfig(**kwargs)


@functools.cache
def _adapter_ingress_cls() -> type:
    """``OpenAiIngress`` that also routes a model id served by a deployment of its own.

    The stock ingress reads ``<base>:<x>`` as "LoRA adapter x of base" and sends it to the base's engine
    (``_get_configured_serve_handle``); a merged copy is a deployment registered under that very id, so an exact
    match wins here. An adapter id whose base serves no LoRA and that is not (yet) deployed is a 404 that says so,
    not an error from an engine without LoRA. Built on first use: importing Serve LLM needs vLLM.
    """
    from fastapi import HTTPException
    from ray.llm._internal.common.utils.lora_utils import get_base_model_id
    from ray.serve.llm.ingress import OpenAiIngress

    class AdapterIngress(OpenAiIngress):
        def _get_configured_serve_handle(self, model_id: str):
            if model_id in self._default_serve_handles:
                if model_id not in self._configured_serve_handles:
                    handle = self._default_serve_handles[model_id].options(stream=True)
                    self._configured_serve_handles[model_id] = handle
                return self._configured_serve_handles[model_id]
            base = get_base_model_id(model_id)
            if base in self._default_serve_handles and base not in self._lora_paths:
                raise HTTPException(
                    404,
                    f'model "{model_id}" is not deployed (yet): a published adapter is served once its merged '
                    "copy is up; `automem model adapters` lists what is published",
                )
            return super()._get_configured_serve_handle(model_id)

    return AdapterIngress


def _pin_version(app: serve.Application, config: Any) -> None:
    """Give an ``LLMServer`` deployment a version derived from its ``LLMConfig``.

    ``serve.run`` gives every deployment without a version a random one (``serve/_private/client.py``), and a new
    version restarts the replicas: redeploying the app to add a merged copy would restart the base engine too.
    ``Deployment.options(version=...)`` was removed from Serve, so the private attribute is set; the same config
    then keeps its replicas, a changed one restarts them.
    """
    blob = json.dumps(config.model_dump(), sort_keys=True, default=repr)
    app._bound_deployment._version = "automem-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_app(
    cfg: ServeConfig, configs: Any, *, env: dict[str, str], api_key: str | None
) -> serve.Application:
    """The OpenAI app: an ``LLMServer`` deployment per ``LLMConfig`` (the base model first, then any merged
    copies) behind one ingress with the API-key check in front.

    This is ``ray.serve.llm.build_openai_app`` with three differences: the ingress's FastAPI app gets
    :class:`ApiKeyMiddleware`, which ``build_openai_app`` offers no hook for; the ingress's replicas and
    autoscaling come from ``deployment.ingress``; and the ingress routes a merged copy's ``<base>:<name>`` to its
    own deployment (:func:`_adapter_ingress_cls`). Each engine deployment's version is derived from its config
    (:func:`_pin_version`), so redeploying with one more model leaves the running engines alone. It follows the
    composition shown in ``ray.serve.llm.ingress.OpenAiIngress``'s docstring. The app is pickled into the
    deployment definition, so the middleware gets only a salted digest of ``api_key`` (:class:`HashedKey`), never
    the key.
    """
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import init as init_ingress_fastapi
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    configs = list(configs) if isinstance(configs, list | tuple) else [configs]
    servers = {}
    for config in configs:
        servers[config.model_id] = build_llm_deployment(config)
        _pin_version(servers[config.model_id], config)
    # Ray's own app, with its exception handling, CORS and request-id middleware; ours is added last, so it runs
    # first (Starlette middleware runs last-in, first-out).
    fastapi_app = init_ingress_fastapi()
    fastapi_app.add_middleware(ApiKeyMiddleware, key=HashedKey.of(api_key) if api_key else None)
    options = ingress_deployment_options(
        cfg.deployment.ingress, OpenAiIngress.get_deployment_options(configs)
    )
    options["ray_actor_options"] = {
        "num_cpus": cfg.deployment.ingress.num_cpus,
        **({"runtime_env": {"env_vars": env}} if env else {}),  # the ingress lists adapters from S3 itself
    }
    ingress = make_fastapi_ingress(_adapter_ingress_cls(), app=fastapi_app)
    lora_paths = {
        c.model_id: c.lora_config.dynamic_lora_loading_path
        for c in configs
        if c.lora_config and c.lora_config.dynamic_lora_loading_path
    }
    return serve.deployment(ingress, **options).bind(
        llm_deployments=servers,
        model_cards={c.model_id: to_model_metadata(c.model_id, c) for c in configs},
        lora_paths=lora_paths,
    )


@dataclass
class MergedCopies:
    """Keeps the app's merged copies in step with the adapter registry (``lora.serve_as: merged``).

    :meth:`sync` merges every listed adapter that has no copy yet (or whose files changed) and redeploys the app
    with one ``LLMServer`` per copy; the base engine's deployment keeps its version, so it is not restarted.
    :meth:`start` runs :meth:`sync` every ``lora.poll_s`` in a thread of this process, so an adapter published to
    a running endpoint (``automem model publish``, or ``AdapterRegistry.publish``) is served without a restart.
    """

    cfg: ServeConfig
    registry: adapters.AdapterRegistry
    base_config: Any
    base_source: str
    env: dict[str, str]
    api_key: str | None
    cpu: CpuChoice | None = None
    progress: Progress = print
    served: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``{name: (fingerprint, merged folder)}`` of the copies in the app."""
    failed: dict[str, str] = field(default_factory=dict)
    """``{name: fingerprint}`` of adapters that could not be merged (retried once their files change)."""
    _missing: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> serve.Application:
        """The app with the base model and every merged copy in :attr:`served`."""
        configs = [self.base_config] + [
            merged_llm_config(self.cfg, name, folder, env=self.env, cpu=self.cpu)
            for name, (_, folder) in sorted(self.served.items())
        ]
        return build_app(self.cfg, configs, env=self.env, api_key=self.api_key)

    def prepare(self) -> bool:
        """Merge what the registry holds that :attr:`served` lacks; return whether the app must be redeployed.

        An adapter gone from two listings in a row is dropped (a replacement unlists it for a moment).
        """
        listed = self.registry.fingerprints()
        changed = False
        for name in sorted(set(self.served) - set(listed)):
            if name in self._missing:
                del self.served[name]
                self._missing.discard(name)
                self.progress(f"adapter {name} is gone from the registry: its merged copy is removed")
                changed = True
            else:
                self._missing.add(name)
        for name, fingerprint in listed.items():
            self._missing.discard(name)
            if self.served.get(name, ("",))[0] == fingerprint or self.failed.get(name) == fingerprint:
                continue
            try:
                with tempfile.TemporaryDirectory(prefix="automem-adapter-") as tmp:
                    local = self.registry.download(name, Path(tmp) / name)
                    folder = merge_adapter(local, self.base_source, progress=self.progress)
            except Exception as exc:  # noqa: BLE001 - one bad adapter must not stop the others
                self.failed[name] = fingerprint
                self.progress(f"adapter {name} cannot be merged, not served: {type(exc).__name__}: {exc}")
                continue
            self.failed.pop(name, None)
            self.served[name] = (fingerprint, str(folder))
            changed = True
        return changed

    def sync(self) -> list[str]:
        """Merge and deploy what changed in the registry; return the names served afterwards."""
        with self._lock:
            if self.prepare():
                t0 = time.monotonic()
                names = ", ".join(sorted(self.served)) or "none"
                self.progress(f"deploying merged copies: {names}")
                serve.run(self.app(), name=APP_NAME, route_prefix=ROUTE_PREFIX)
                self.progress(f"merged copies deployed after {time.monotonic() - t0:.0f} s: {names}")
            return sorted(self.served)

    def start(self) -> None:
        """Call :meth:`sync` every ``lora.poll_s`` in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.cfg.lora.poll_s):
                try:
                    self.sync()
                except Exception as exc:  # noqa: BLE001 - keep watching; the next poll retries
                    self.progress(f"adapter sync failed: {type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, name="automem-merged-copies", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread. A deploy under way is not waited for (it can take minutes; the app is deleted next,
        which ends it): stopping an endpoint that was adding a copy took 82 s when this waited."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def required_api_key(cfg: ServeConfig, api_key: str | None = None) -> str | None:
    """``api_key``, or ``AUTOMEM_API_KEY`` when None; None or empty means no check.

    Raises:
        RuntimeError: ``server.require_api_key`` is set and there is no key.
    """
    api_key = api_key if api_key is not None else env_vars.AUTOMEM_API_KEY.get()
    if cfg.server.require_api_key and not api_key:
        raise RuntimeError("server.require_api_key is set but AUTOMEM_API_KEY is not")
    return api_key


def endpoint_app(
    cfg: ServeConfig,
    source: str,
    *,
    api_key: str | None,
    cpu: CpuChoice | None = None,
    registry: adapters.AdapterRegistry | None = None,
    local_s3: LocalS3 | None = None,
    progress: Progress = print,
) -> tuple[serve.Application, MergedCopies | None]:
    """The app of ``cfg``, deployed by :func:`start_endpoint` and returned by ``serve_builder.app_builder``; not run.

    Args:
        cfg: the serve config.
        source: the base model's folder or hub id (``model.source`` with ``embedded`` resolved).
        api_key: the bearer key the ingress requires (None or empty: no check).
        cpu: the CPU engine's dtype and binding (None: chosen on this machine).
        registry: the adapter registry when ``lora.enabled``.
        local_s3: the local S3 server holding an embedded registry, whose endpoint the replicas get.
        progress: receives one-line progress messages (merging adapters).

    Returns:
        The app, and the keeper of its merged copies (``lora.serve_as: merged`` with a registry; else None),
        which has merged what the registry holds but is not started.
    """
    env = replica_env(cfg, local_s3, cpu)
    config = llm_config(cfg, source, env=env, registry_uri=registry.uri if registry else None, cpu=cpu)
    if cfg.serves_merged and registry is not None:
        merged = MergedCopies(cfg, registry, config, source, env, api_key, cpu, progress)
        merged.prepare()
        return merged.app(), merged
    return build_app(cfg, config, env=env, api_key=api_key), None


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
    merged: MergedCopies | None = None
    """The merged copies' keeper (``lora.serve_as: merged``), watching the registry."""

    def publish(
        self, local_dir: str | Path, name: str, *, api_key: str | None = None, timeout_s: float = 900.0
    ) -> str:
        """Publish an adapter to this endpoint's registry and return ``<base id>:<name>`` once it answers.

        With merged copies this merges and deploys it now (rather than at the next poll); with LoRA the base
        engine loads it on the first request. For tests and scripts that hold the endpoint; users run
        ``automem model publish``.
        """
        if self.registry is None:
            raise RuntimeError("this endpoint serves no adapters (lora.enabled is false)")
        self.registry.publish(local_dir, name)
        if self.merged is not None:
            self.merged.sync()
        model = f"{self.model_id}:{name}"
        wait_until_ready(self.base_url, model, api_key=api_key, timeout_s=timeout_s)
        return model


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
    api_key = required_api_key(cfg, api_key)
    check_no_conflict(cfg)  # before anything is started, so a refusal leaves everything as it was
    cpu = cpu_choice(cfg)  # once, so the log line, the engine's dtype and its binding agree
    if cpu is not None:
        progress(cpu.line())
    source = cfg.model.source
    if source == EMBEDDED:
        source = str(prepare_embedded_model(progress=progress))
    local_s3 = registry = merged = None
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
        app, merged = endpoint_app(
            cfg, source, api_key=api_key, cpu=cpu, registry=registry, local_s3=local_s3, progress=progress
        )
        serve.start(http_options={"host": cfg.server.host, "port": cfg.server.port})
        check_no_conflict(cfg)  # again: another process may have deployed while the S3 server started
        copies = f" and {len(merged.served)} merged adapter copies" if merged and merged.served else ""
        progress(
            f"deploying {cfg.model.id}{copies} on Ray Serve LLM (vLLM, {cfg.accelerator}); about 100 s on a "
            "laptop CPU"
        )
        deployed = True
        _run_with_heartbeat(app, progress, t0)
        wait_until_ready(cfg.base_url, cfg.model.id, api_key=api_key, timeout_s=cfg.server.ready_timeout_s)
        if merged is not None:
            merged.start()
    except BaseException:
        if merged is not None:
            merged.stop()
        if deployed:
            _delete_app(APP_NAME)  # ours: the checks above found no app of that name
        if local_s3:
            local_s3.stop()
        raise
    ready = time.monotonic() - t0
    progress(f"ready after {ready:.0f} s")
    return RunningEndpoint(
        cfg.base_url, cfg.model.id, registry=registry, local_s3=local_s3, ready_s=ready, merged=merged
    )


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
    if endpoint.merged is not None:
        endpoint.merged.stop()
    _delete_app(endpoint.app_name)
    if endpoint.local_s3 is not None:
        endpoint.local_s3.stop()
