"""Render deployment files from a serve config: what ``automem deploy render`` writes.

``kuberay``: a RayService (the endpoint), RayJobs for a rollout, a distillation training and an evolve run, and a
RayCluster for interactive use. ``ray-up``: one cluster config for ``ray up``. The checked-in ``deploy/kuberay/``
files are :func:`render` with the defaults (a unit test keeps them equal):

    automem deploy render --target kuberay --out deploy/kuberay --force
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from automem.config import ConfigError, StrictConfig
from automem.deploy import kuberay, rayup
from automem.deploy.checks import check_manifests
from automem.deploy.images import CPU_IMAGE, GPU_IMAGE
from automem.serving.config import ServeConfig, cluster_problem, load_config

TARGETS = ("kuberay", "ray-up")
"""What ``--target`` accepts."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (automem is installed editable); images hold it at :data:`automem.deploy.images.APP_DIR`."""

DEFAULT_SERVE_CONFIG = "deploy/serve-gpu.yaml"
"""The serve config rendered from by default, relative to :data:`PROJECT_ROOT`."""


class DeployError(ValueError):
    """Input that cannot be rendered; the message is one line naming the fix."""


class RenderOptions(StrictConfig):
    """What ``automem deploy render`` renders."""

    target: Literal["kuberay", "ray-up"]
    """``kuberay`` (RayService, RayJobs, RayCluster) or ``ray-up`` (a cluster config)."""
    serve_config: str = DEFAULT_SERVE_CONFIG
    """The serve config: a path relative to the repository root or absolute (inside the checkout, so the images
    built from it hold the file the jobs name)."""
    serve_overrides: tuple[str, ...] = ()
    """``key=value`` overrides of the serve config."""
    image: str | None = None
    """The image every pod or node runs; None: the GPU image, or the CPU image for an ``accelerator: cpu``
    serve config."""
    name: str = Field("automem", pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    """Base name of the resources (a DNS label: the RayService's Service is ``<name>-serve-svc``)."""
    store: str | None = None
    """Storage root of trajectories, checkpoints and evolve runs; None: the bucket of ``lora.registry``."""
    dataset: str | None = None
    """The training job's dataset (``<root>/datasets/<id>``); None: a placeholder under the store to replace."""
    adapter: str = Field("specialist-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Name the trained adapter is published under."""
    region: str = "us-west-2"
    """AWS region (``ray-up``)."""
    serve_instance_type: str | None = None
    """AWS instance type of the serve nodes (``ray-up``); None: chosen from the serve config's GPU type."""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the embedded Serve config) as literal blocks, readable in review; no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(manifest: dict[str, Any], header: str) -> str:
    """YAML text of ``manifest`` under a comment ``header``."""
    lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return lines + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=110)


def _serve_path(path: str) -> tuple[Path, str]:
    full = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    try:
        rel = full.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        raise DeployError(
            f"the serve config {path} is outside the checkout {PROJECT_ROOT}; copy it under deploy/ (the images "
            "hold the checkout, and the jobs read it there)"
        ) from None
    return full, rel.as_posix()


def _store(options: RenderOptions, cfg: ServeConfig) -> str:
    if options.store:
        return options.store.rstrip("/")
    if cfg.lora.registry.startswith("s3://"):
        return "s3://" + cfg.lora.registry.removeprefix("s3://").split("/")[0]
    raise DeployError("the serve config's lora.registry is not on s3://; pass --store s3://bucket/prefix")


def _header(what: str, options: RenderOptions, source: str) -> str:
    return (
        f"{what}\n"
        f"Rendered by `automem deploy render --target {options.target}` from {source}; do not edit, render again.\n"
        + (
            f"KubeRay {kuberay.KUBERAY_VERSION} CRDs (schemas in deploy/kuberay/schemas/). "
            if options.target == "kuberay"
            else ""
        )
        + "Build and push the image first: deploy/README.md."
    )


def render(options: RenderOptions) -> dict[str, str]:
    """``{file name: YAML text}`` for ``options``.

    Raises:
        DeployError: the serve config fails validation or cannot be deployed on the target (one line).
    """
    full, rel = _serve_path(options.serve_config)
    try:
        cfg = load_config(full, list(options.serve_overrides))
    except ConfigError as exc:
        raise DeployError(" ".join(str(exc).split())) from None
    image = options.image or (GPU_IMAGE if cfg.accelerator == "gpu" else CPU_IMAGE)
    if options.target == "ray-up":
        if cfg.accelerator != "gpu":
            raise DeployError(
                "the ray-up target runs the GPU stack; give a serve config with accelerator: gpu"
            )
        try:
            cluster = rayup.cluster_config(
                cfg,
                name=options.name,
                image=image,
                region=options.region,
                serve_instance_type=options.serve_instance_type,
            )
        except ValueError as exc:
            raise DeployError(str(exc)) from None
        what = f"A `ray up` cluster for automem on AWS.\n  ray up ray-cluster.yaml\n  then: automem serve --config {rel}"
        return {"ray-cluster.yaml": dump(cluster, _header(what, options, rel))}
    return _render_kuberay(options, cfg, image, rel)


def _render_kuberay(options: RenderOptions, cfg: ServeConfig, image: str, rel: str) -> dict[str, str]:
    if cfg.server.host not in ("0.0.0.0", "::"):
        raise DeployError(
            f"server.host is {cfg.server.host}: set 0.0.0.0 so the serve Service reaches the proxies"
        )
    problem = cluster_problem(cfg)
    if problem:
        raise DeployError(f"the RayService builds the app with Serve's deployer: {problem}")
    store = _store(options, cfg)
    name = options.name
    dataset = options.dataset or f"{store}/loop2/datasets/REPLACE-WITH-DATASET-ID"
    serve_yaml = yaml.safe_dump(kuberay.serve_config_v2(cfg), sort_keys=False, width=110)
    manifests = {
        "rayservice.yaml": kuberay.rayservice(name, cfg, image, serve_yaml),
        "rayjob-rollout.yaml": kuberay.rollout_job(name, cfg, image, store),
        "rayjob-distill-train.yaml": kuberay.distill_job(
            name, cfg, image, store, dataset, options.adapter, rel
        ),
        "rayjob-evolve.yaml": kuberay.evolve_job(name, cfg, image, store),
        "raycluster.yaml": kuberay.raycluster(name, cfg, image),
    }
    problems = check_manifests(manifests, {image}, cfg)
    if problems:
        raise DeployError("; ".join(problems))
    what = {
        "rayservice.yaml": "The model endpoint. kubectl apply -f rayservice.yaml; clients use "
        + kuberay.endpoint_url(name, cfg),
        "rayjob-rollout.yaml": "A rollout against the RayService's endpoint, runners on CPU pods from zero.",
        "rayjob-distill-train.yaml": "Loop 2 training on GPU pods from zero (Ray Train), then publish the adapter."
        + ("\nReplace the dataset id, or render with --dataset." if options.dataset is None else ""),
        "rayjob-evolve.yaml": "Loop 1 with the served model reviewing; gated rollouts on CPU pods from zero.",
        "raycluster.yaml": "An interactive cluster; kubectl port-forward svc/"
        + f"{name}-head-svc 8265, then automem submit --address http://127.0.0.1:8265 -- automem ...",
    }
    return {f: dump(m, _header(what[f], options, rel)) for f, m in manifests.items()}


def write_files(files: dict[str, str], out: str | Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` into folder ``out`` (created); only the named files are replaced, nothing else removed.

    Raises:
        DeployError: ``out`` is a file, or a folder that is not empty and ``force`` is not set (nothing written).
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise DeployError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise DeployError(f"--out {folder} is not empty; pass --force to replace the rendered files in it")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in files.items():
        path = folder / fname
        tmp = path.with_name(f".{fname}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written
