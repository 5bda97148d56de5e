"""What a KubeRay CRD schema cannot see in rendered manifests.

The schema checks shapes; these check meaning: every container runs one of automem's images, the serve config a
RayService embeds is a valid automem serve config, each worker group tells Ray the resources its pods really get,
the GPU groups scale from zero under the in-tree autoscaler, the model replicas fit one serve pod, and every custom
resource a job asks for is offered by some group.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import yaml

from automem.config import ConfigError
from automem.serving.config import ServeConfig, parse_config


def clusters(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The RayCluster specs inside a RayService, RayJob or RayCluster manifest."""
    spec = manifest.get("spec", {})
    kind = manifest.get("kind")
    if kind == "RayService":
        yield spec.get("rayClusterConfig", {})
    elif kind == "RayJob":
        yield spec.get("rayClusterSpec", {})
    elif kind == "RayCluster":
        yield spec


def ray_resources(params: dict[str, str]) -> dict[str, float]:
    """Custom resources of ``rayStartParams["resources"]`` (the quoted-JSON form KubeRay documents)."""
    raw = params.get("resources")
    if not raw:
        return {}
    return {str(k): float(v) for k, v in json.loads(raw.strip().strip('"').replace('\\"', '"')).items()}


def _quantity(value: Any) -> float:
    # Only the forms the renderer writes: plain numbers and millicores.
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _groups(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    head = [("head", cluster.get("headGroupSpec", {}), True)]
    return head + [(g.get("groupName", "?"), g, False) for g in cluster.get("workerGroupSpecs", [])]


def _check_group(where: str, group: dict[str, Any], is_head: bool, images: set[str]) -> list[str]:
    problems = []
    params = group.get("rayStartParams", {})
    containers = group.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        return [f"{where}: no containers"]
    ray = containers[0]
    for c in containers + group.get("template", {}).get("spec", {}).get("initContainers", []):
        if c.get("image") not in images:
            problems.append(
                f"{where}: container {c.get('name')} runs {c.get('image')}, not one of {sorted(images)}"
            )
    env = {e.get("name"): e.get("value") for e in ray.get("env", [])}
    if "RAY_AUTH_MODE" not in env:
        problems.append(f"{where}: RAY_AUTH_MODE is not set explicitly")
    limits = ray.get("resources", {}).get("limits", {})
    gpus = _quantity(limits.get("nvidia.com/gpu", 0))
    if _quantity(params.get("num-gpus", gpus)) != gpus:
        problems.append(f"{where}: num-gpus {params.get('num-gpus')} but the pod gets {gpus:g} GPU(s)")
    if "cpu" in limits and "num-cpus" in params:
        cpus, told = _quantity(limits["cpu"]), _quantity(params["num-cpus"])
        if told > cpus or (not is_head and told != cpus):
            problems.append(f"{where}: num-cpus {params['num-cpus']} but the pod gets {cpus:g} CPU(s)")
    if ray.get("resources", {}).get("requests", limits) != limits:
        problems.append(f"{where}: requests differ from limits (the autoscaler plans with one of them)")
    if gpus and not group.get("template", {}).get("spec", {}).get("tolerations"):
        problems.append(f"{where}: GPU pods without a toleration for GPU nodes")
    if not is_head:
        lo, hi = group.get("minReplicas"), group.get("maxReplicas", 0)
        if gpus and lo != 0:
            problems.append(f"{where}: a GPU group must scale from 0 (minReplicas {lo})")
        if lo is None or lo > hi or hi < 1:
            problems.append(f"{where}: minReplicas {lo} / maxReplicas {hi} allow no scaling")
    try:
        ray_resources(params)
    except (ValueError, AttributeError) as exc:
        problems.append(f"{where}: rayStartParams.resources is not quoted JSON ({exc})")
    return problems


def _serve_problems(where: str, manifest: dict[str, Any], expected: ServeConfig | None) -> list[str]:
    try:
        serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
        (app,) = serve["applications"]
        cfg = parse_config(app["args"]["config"], source=f"{where} serveConfigV2")
    except ConfigError as exc:
        return [" ".join(str(exc).split())]
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        return [f"{where}: serveConfigV2 is not one automem application with args.config ({exc!r})"]
    problems = []
    if expected is not None and cfg != expected:
        problems.append(f"{where}: the embedded serve config differs from the one rendered from")
    if serve.get("http_options", {}).get("port") != cfg.server.port:
        problems.append(f"{where}: http_options.port is not the serve config's server.port")
    if cfg.server.host not in ("0.0.0.0", "::"):
        problems.append(f"{where}: server.host {cfg.server.host} is not reachable through the serve Service")
    (cluster,) = clusters(manifest)
    need = cfg.engine.tensor_parallel_size if cfg.accelerator == "gpu" else 0
    auto = cfg.deployment.autoscaling
    replicas = auto.max_replicas if auto is not None else cfg.deployment.num_replicas
    fits = []
    for _name, group, _ in _groups(cluster)[1:]:
        params = group.get("rayStartParams", {})
        if _quantity(params.get("num-gpus", 0)) < need:
            continue
        if cfg.accelerator_type and f"accelerator_type:{cfg.accelerator_type}" not in ray_resources(params):
            continue
        fits.append(group.get("maxReplicas", 0))
    if not fits:
        problems.append(
            f"{where}: no worker group fits one replica ({need} GPU(s)"
            + (f", accelerator_type:{cfg.accelerator_type})" if cfg.accelerator_type else ")")
        )
    elif sum(fits) < replicas:
        problems.append(
            f"{where}: the serve groups hold {sum(fits)} replicas, the config scales to {replicas}"
        )
    return problems


def _asked_resources(entrypoint: str) -> set[str]:
    names: set[str] = set()
    words = shlex.split(entrypoint)
    for flag, value in zip(words, words[1:], strict=False):
        if flag == "--runner-resource":
            names.add(value.split("=")[0])
    for word in words:
        m = re.match(r"runner_resources=\{(.*)\}$", word)
        if m:
            names.update(k.split(":")[0].strip() for k in m.group(1).split(",") if k.strip())
    return names


def check_manifests(
    manifests: dict[str, dict[str, Any]], images: set[str], serve: ServeConfig | None = None
) -> list[str]:
    """Problems in ``{file name: manifest}`` that the CRD schemas cannot see; empty when there are none.

    Args:
        manifests: parsed KubeRay resources.
        images: the image names containers may run (:mod:`automem.deploy.images`, or the one ``--image``).
        serve: the serve config a RayService must embed (None: any valid one).
    """
    problems: list[str] = []
    for fname, manifest in manifests.items():
        for cluster in clusters(manifest):
            if not cluster.get("enableInTreeAutoscaling"):
                problems.append(f"{fname}: enableInTreeAutoscaling is off (groups would not scale from 0)")
            offered: set[str] = set()
            for name, group, is_head in _groups(cluster):
                problems += _check_group(f"{fname} {name}", group, is_head, images)
                offered |= set(ray_resources(group.get("rayStartParams", {})))
            if manifest.get("kind") == "RayJob":
                missing = _asked_resources(manifest["spec"].get("entrypoint", "")) - offered
                if missing:
                    problems.append(f"{fname}: the job asks for {sorted(missing)}, which no group offers")
        if manifest.get("kind") == "RayService":
            problems += _serve_problems(fname, manifest, serve)
    return problems
