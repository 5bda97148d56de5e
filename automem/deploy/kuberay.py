"""KubeRay custom resources built from a serve config: a ``RayService``, three ``RayJob``s and a ``RayCluster``.

Every cluster autoscales in-tree (the Ray autoscaler as a sidecar of the head) and every worker group starts at
zero: GPUs are paid for only while a replica or a training worker runs on them. The head runs no work
(``num-cpus: 0``), as in ``ray_cluster.yaml``. Ray's own resources are stated in each group's ``rayStartParams``
and equal the pod's limits, so what the autoscaler plans with is what Kubernetes schedules
(:func:`automem.deploy.checks.check_manifests` verifies it).

Ray token auth stays off inside the cluster (``RAY_AUTH_MODE=disabled``, set explicitly in every container, as
``ray_cluster.yaml`` and ``automem submit`` do): Ray's ports are reached only on the pod network, so keep a
NetworkPolicy around the namespace. The HTTP endpoint is guarded by ``AUTOMEM_API_KEY`` from the Secret.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from automem import env_vars
from automem.deploy.images import APP_DIR, RAY_VERSION
from automem.serving.config import ServeConfig

KUBERAY_VERSION = "v1.7.0"
"""The KubeRay release the manifests are written for; its CRD schemas are vendored in ``deploy/kuberay/schemas/``."""

API_VERSION = "ray.io/v1"
"""The KubeRay API version of every resource (KubeRay 1.x)."""

SERVE_APP_IMPORT_PATH = "actors.serve_builder:app_builder"
"""The Ray Serve application builder a RayService runs; its ``args`` are ``{"config": <serve config>}``."""

SERVE_APP_NAME = "automem-llm"
"""The Serve application's name (``actors/serve_app.py``'s ``APP_NAME``)."""

SECRET_NAME = "automem-secrets"
"""Secret whose keys become environment variables in every pod: ``AUTOMEM_API_KEY``, ``AWS_*``."""

RAY_AUTH_MODE = env_vars.RAY_AUTH_MODE.default or "disabled"
"""Set explicitly in every container (Ray 2.60 otherwise picks token auth on its own)."""

ROLLOUT_RESOURCE = "rollout"
"""Custom Ray resource of the rollout pods; runners ask for a sliver of it (``--runner-resource rollout=0.01``)."""

TRAIN_RESOURCE = "train"
"""Custom Ray resource of the training pods (as ``ray_cluster.yaml``'s ``gpu_train`` nodes)."""

MODEL_DIR = "/models/base"
"""Where an init container downloads the base model for training (each pod its own copy)."""

HEAD = {"cpu": 4, "memory_gi": 16}
ROLLOUT = {"cpu": 16, "memory_gi": 32, "max": 32}
TRAIN = {"cpu": 8, "memory_gi": 64, "gpus": 1, "max": 4}
CPUS_PER_GPU = 8
MEMORY_GI_PER_GPU = 48
IDLE_TIMEOUT_S = 600  # ray_cluster.yaml's idle_timeout_minutes: 10


def _env() -> list[dict[str, Any]]:
    return [
        {"name": env_vars.RAY_AUTH_MODE.name, "value": RAY_AUTH_MODE},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
    ]


def _container(
    name: str,
    image: str,
    cpu: int,
    memory_gi: int,
    gpus: int = 0,
    *,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": str(cpu), "memory": f"{memory_gi}Gi"}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": _env(),
        "envFrom": [{"secretRef": {"name": SECRET_NAME, "optional": True}}],
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if ports:
        container["ports"] = ports
    return container


def _template(container: dict[str, Any], gpus: int, model_source: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container]}
    if gpus:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if model_source:
        # The training function takes a local model folder; each pod fetches its own copy before Ray starts.
        mount = {"name": "models", "mountPath": "/models"}
        container["volumeMounts"] = [mount]
        spec["volumes"] = [{"name": "models", "emptyDir": {}}]
        spec["initContainers"] = [
            {
                "name": "fetch-base-model",
                "image": container["image"],
                "command": ["hf", "download", model_source, "--local-dir", MODEL_DIR],
                "envFrom": container["envFrom"],
                "volumeMounts": [mount],
            }
        ]
    return {"spec": spec}


def _start_params(cpu: int, gpus: int, resources: dict[str, int] | None = None) -> dict[str, str]:
    params = {"num-cpus": str(cpu), "num-gpus": str(gpus)}
    if resources:
        # The quoted-JSON form KubeRay passes to `ray start --resources` and Ray's autoscaler parses.
        params["resources"] = '"' + json.dumps(resources).replace('"', '\\"') + '"'
    return params


def _head(image: str, serve_port: int | None, model_source: str | None = None) -> dict[str, Any]:
    ports = [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
    ]
    if serve_port is not None:
        ports.append({"name": "serve", "containerPort": serve_port})
    container = _container("ray-head", image, HEAD["cpu"], HEAD["memory_gi"], ports=ports)
    return {
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _template(container, 0, model_source),
    }


def _group(
    name: str,
    image: str,
    *,
    cpu: int,
    memory_gi: int,
    gpus: int,
    max_replicas: int,
    resources: dict[str, int] | None = None,
    serve_port: int | None = None,
    model_source: str | None = None,
) -> dict[str, Any]:
    ports = [{"name": "serve", "containerPort": serve_port}] if serve_port is not None else None
    container = _container("ray-worker", image, cpu, memory_gi, gpus, ports=ports)
    return {
        "groupName": name,
        "replicas": 0,
        "minReplicas": 0,
        "maxReplicas": max_replicas,
        "rayStartParams": _start_params(cpu, gpus, resources),
        "template": _template(container, gpus, model_source),
    }


def _cluster(head: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": IDLE_TIMEOUT_S},
        "headGroupSpec": head,
        "workerGroupSpecs": groups,
    }


def serve_group(cfg: ServeConfig, image: str) -> dict[str, Any]:
    """The worker group that holds the model replicas: one replica per pod (``tensor_parallel_size`` GPUs), as many
    pods as the engine deployment's most replicas, from zero. A set ``accelerator_type`` is declared as Ray's
    ``accelerator_type:<T>`` resource, so the autoscaler knows this group satisfies the replicas' request."""
    gpu = cfg.accelerator == "gpu"
    gpus = cfg.engine.tensor_parallel_size if gpu else 0
    auto = cfg.deployment.autoscaling
    replicas = auto.max_replicas if auto is not None else cfg.deployment.num_replicas
    resources = {f"accelerator_type:{cfg.accelerator_type}": 1} if cfg.accelerator_type else None
    return _group(
        "gpu-serve" if gpu else "cpu-serve",
        image,
        cpu=CPUS_PER_GPU * max(gpus, 1),
        memory_gi=MEMORY_GI_PER_GPU * max(gpus, 1),
        gpus=gpus,
        max_replicas=replicas,
        resources=resources,
        serve_port=cfg.server.port,
    )


def rollout_group(image: str) -> dict[str, Any]:
    """CPU pods for episode runners (game steps are CPU work), marked with the ``rollout`` resource."""
    return _group(
        "cpu-rollout",
        image,
        cpu=ROLLOUT["cpu"],
        memory_gi=ROLLOUT["memory_gi"],
        gpus=0,
        max_replicas=ROLLOUT["max"],
        resources={ROLLOUT_RESOURCE: 1},
    )


def train_group(
    image: str, model_source: str | None = None, max_replicas: int = TRAIN["max"]
) -> dict[str, Any]:
    """GPU pods for Ray Train workers (one GPU each), marked with the ``train`` resource."""
    return _group(
        "gpu-train",
        image,
        cpu=TRAIN["cpu"],
        memory_gi=TRAIN["memory_gi"],
        gpus=TRAIN["gpus"],
        max_replicas=max_replicas,
        resources={TRAIN_RESOURCE: 1},
        model_source=model_source,
    )


def serve_config_v2(cfg: ServeConfig) -> dict[str, Any]:
    """The Ray Serve config a RayService deploys: automem's app builder with the whole serve config as its
    argument (validated again by the builder with the strict schema)."""
    return {
        "http_options": {"host": cfg.server.host, "port": cfg.server.port},
        "applications": [
            {
                "name": SERVE_APP_NAME,
                "route_prefix": "/",
                "import_path": SERVE_APP_IMPORT_PATH,
                "args": {"config": cfg.model_dump(mode="json", exclude_defaults=True)},
            }
        ],
    }


def _meta(name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"app.kubernetes.io/name": "automem", "app.kubernetes.io/component": component},
    }


def rayservice(name: str, cfg: ServeConfig, image: str, serve_yaml: str) -> dict[str, Any]:
    """The model endpoint: Serve autoscales replicas, the Ray autoscaler adds GPU pods for them (from zero)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": _meta(name, "serve"),
        "spec": {
            "serveConfigV2": serve_yaml,
            "rayClusterConfig": _cluster(_head(image, cfg.server.port), [serve_group(cfg, image)]),
        },
    }


def endpoint_url(name: str, cfg: ServeConfig) -> str:
    """The endpoint's URL inside the Kubernetes cluster (KubeRay's ``<rayservice>-serve-svc`` Service)."""
    return f"http://{name}-serve-svc:{cfg.server.port}/v1"


def _job(
    name: str, component: str, entrypoint: list[list[str]], cluster: dict[str, Any], deadline_s: int
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": _meta(name, component),
        "spec": {
            "entrypoint": " && ".join(shlex.join(cmd) for cmd in entrypoint),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "activeDeadlineSeconds": deadline_s,
            "rayClusterSpec": cluster,
        },
    }


def rollout_job(
    name: str, cfg: ServeConfig, image: str, store: str, env: str = "nethack-v0"
) -> dict[str, Any]:
    """Many episodes against the RayService's endpoint; runners on the rollout pods."""
    cmd = [
        "automem", "rollout", "--env", env, "--episodes", "1000", "--concurrency", "1000",
        "--endpoint", endpoint_url(name, cfg), "--model", cfg.model.id,
        "--context-window", str(cfg.engine.max_model_len),
        "--runner-resource", f"{ROLLOUT_RESOURCE}=0.01",
        "--out", f"{store}/trajectories", "--run-id", f"{env.split('-')[0]}-0001", "--no-progress",
    ]  # fmt: skip
    cluster = _cluster(_head(image, None), [rollout_group(image)])
    return _job(f"{name}-rollout", "rollout", [cmd], cluster, 24 * 3600)


def is_hub_id(source: str) -> bool:
    """Whether a model source is a Hugging Face hub id (``org/name``), fetched by an init container."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source) is not None


def distill_job(
    name: str, cfg: ServeConfig, image: str, store: str, dataset: str, adapter: str, serve_config_path: str
) -> dict[str, Any]:
    """Trains a LoRA specialist on GPU workers (Ray Train), then publishes it to the serve config's registry."""
    source = cfg.model.source if is_hub_id(cfg.model.source) else None
    out = f"/tmp/{adapter}"
    train = [
        "automem", "distill", "train", "--dataset", dataset, "--preset", "crafter",
        f"num_workers={TRAIN['max']}", f"base_model={MODEL_DIR if source else cfg.model.source}", f"checkpoint_path={store}/checkpoints/{adapter}",
        "--serve-config", f"{APP_DIR}/{serve_config_path}", "--out", out,
    ]  # fmt: skip
    publish = [
        "automem", "model", "publish", f"{out}/adapter", adapter,
        "--registry", cfg.lora.registry, "--config", f"{APP_DIR}/{serve_config_path}", "--no-wait",
    ]  # fmt: skip
    cluster = _cluster(_head(image, None, source), [train_group(image, source)])
    return _job(f"{name}-distill-train", "distill", [train, publish], cluster, 12 * 3600)


def evolve_job(
    name: str, cfg: ServeConfig, image: str, store: str, env: str = "crafter-v0"
) -> dict[str, Any]:
    """Loop 1 with the served model as the reviewer; its gated rollouts run on the rollout pods."""
    url = endpoint_url(name, cfg)
    cmd = [
        "automem", "evolve", "--env", env, "--reviewer", f"openai:{cfg.model.id}@{url}",
        "--endpoint", url, "--model", cfg.model.id, "--out", f"{store}/evolve", "--executor", "ray",
        "--no-progress", f"runner_resources={{{ROLLOUT_RESOURCE}: 0.01}}",
    ]  # fmt: skip
    cluster = _cluster(_head(image, None), [rollout_group(image)])
    return _job(f"{name}-evolve", "evolve", [cmd], cluster, 24 * 3600)


def raycluster(name: str, cfg: ServeConfig, image: str) -> dict[str, Any]:
    """An interactive cluster with every group (rollout, serve, train), all from zero: ``automem submit`` to it."""
    groups = [rollout_group(image), serve_group(cfg, image), train_group(image)]
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": _meta(name, "interactive"),
        "spec": _cluster(_head(image, cfg.server.port), groups),
    }
