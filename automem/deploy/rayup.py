"""A ``ray up`` cluster config (AWS) built from a serve config, like ``ray_cluster.yaml`` but running the GPU image.

Node types are ``ray_cluster.yaml``'s: a CPU head that runs no work, CPU rollout workers (the ``rollout``
resource), GPU serve workers sized for the serve config's replicas and GPU type, GPU train workers from zero. Every
node runs :data:`automem.deploy.images.GPU_IMAGE` in Docker, so nothing is installed at start-up.
"""

from __future__ import annotations

from typing import Any

from automem.deploy.images import GPU_IMAGE
from automem.deploy.kuberay import RAY_AUTH_MODE, ROLLOUT, ROLLOUT_RESOURCE, TRAIN, TRAIN_RESOURCE
from automem.serving.config import ServeConfig

AWS_GPU_INSTANCES: dict[str, dict[int, str]] = {
    "L4": {1: "g6.xlarge", 4: "g6.12xlarge", 8: "g6.48xlarge"},
    "L40S": {1: "g6e.xlarge", 4: "g6e.12xlarge", 8: "g6e.48xlarge"},
    "A10G": {1: "g5.xlarge", 4: "g5.12xlarge", 8: "g5.48xlarge"},
    "A100": {8: "p4d.24xlarge"},
    "H100": {8: "p5.48xlarge"},
}
"""AWS instance types by Ray ``accelerator_type`` and GPUs per instance."""

DEFAULT_GPU_TYPE = "L40S"
"""GPU type when the serve config names none (``ray_cluster.yaml``'s g6e nodes)."""

AMI = "ami-0c2b8ca1dad447f8a"
"""Deep Learning Base AMI (Ubuntu 22.04, NVIDIA driver and Docker); pin your own."""


def serve_instance(cfg: ServeConfig) -> str:
    """The smallest AWS instance of the serve config's GPU type that holds one replica.

    Raises:
        ValueError: no instance of that type is known, or none has enough GPUs.
    """
    gpu = cfg.accelerator_type or DEFAULT_GPU_TYPE
    sizes = AWS_GPU_INSTANCES.get(gpu)
    if sizes is None:
        raise ValueError(
            f"no AWS instance type is known for accelerator_type {gpu} (known: {', '.join(AWS_GPU_INSTANCES)}); "
            "pass --serve-instance-type"
        )
    fitting = [n for n in sorted(sizes) if n >= cfg.engine.tensor_parallel_size]
    if not fitting:
        raise ValueError(f"no {gpu} instance holds tensor_parallel_size {cfg.engine.tensor_parallel_size}")
    return sizes[fitting[0]]


def cluster_config(
    cfg: ServeConfig,
    *,
    name: str,
    image: str = GPU_IMAGE,
    region: str = "us-west-2",
    serve_instance_type: str | None = None,
) -> dict[str, Any]:
    """The cluster config ``ray up`` takes (validated by Ray's own schema in the integration tests)."""
    auto = cfg.deployment.autoscaling
    replicas = auto.max_replicas if auto is not None else cfg.deployment.num_replicas
    serve_type = serve_instance_type or serve_instance(cfg)
    gpu_docker = {"worker_run_options": ["--gpus all"]}

    def node(instance: str, **extra: Any) -> dict[str, Any]:
        return {**extra, "node_config": {"InstanceType": instance, "ImageId": AMI}}

    return {
        "cluster_name": name,
        "max_workers": ROLLOUT["max"] + replicas + TRAIN["max"],
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 10,
        "docker": {
            "image": image,
            "container_name": "automem",
            "pull_before_run": True,
            "run_options": ["--ulimit nofile=65536:65536", f"-e RAY_AUTH_MODE={RAY_AUTH_MODE}"],
        },
        "provider": {
            "type": "aws",
            "region": region,
            "availability_zone": f"{region}a,{region}b",
            "cache_stopped_nodes": False,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "head": node("m6i.2xlarge", resources={"CPU": 0}),
            "cpu_rollout": node(
                "c6i.8xlarge", min_workers=0, max_workers=ROLLOUT["max"], resources={ROLLOUT_RESOURCE: 1}
            ),
            "gpu_serve": node(
                serve_type,
                min_workers=0,
                max_workers=replicas,
                **(
                    {"resources": {f"accelerator_type:{cfg.accelerator_type}": 1}}
                    if cfg.accelerator_type
                    else {}
                ),
                docker=gpu_docker,
            ),
            "gpu_train": node(
                AWS_GPU_INSTANCES[DEFAULT_GPU_TYPE][1],
                min_workers=0,
                max_workers=TRAIN["max"],
                resources={TRAIN_RESOURCE: 1},
                docker=gpu_docker,
            ),
        },
        "head_node_type": "head",
        "head_start_ray_commands": [
            "ray stop",
            f"RAY_AUTH_MODE={RAY_AUTH_MODE} ray start --head --port=6379 --dashboard-host=0.0.0.0 "
            "--autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [
            "ray stop",
            f"RAY_AUTH_MODE={RAY_AUTH_MODE} ray start --address=$RAY_HEAD_IP:6379",
        ],
    }
