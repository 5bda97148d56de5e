"""Deploy: render cluster manifests from automem's configs, so nobody hand-edits YAML (deploy/README.md).

    automem deploy render --target kuberay --out k8s
    automem deploy render --target kuberay --out deploy/kuberay --force      # regenerate the checked-in files
    automem deploy render --target kuberay --serve-config deploy/serve-gpu.yaml --set engine.tensor_parallel_size=4 \\
        --image registry.example.com/automem:0.1.0-gpu --store s3://bucket/automem --dataset s3://bucket/loop2/datasets/<id> --out k8s
    automem deploy render --target ray-up --out cluster && ray up cluster/ray-cluster.yaml

``kuberay`` writes a RayService (the serve config's endpoint: Serve autoscales replicas, the Ray autoscaler adds GPU
pods from zero), RayJobs for a rollout, a distillation training and an evolve run, and a RayCluster for interactive
use (``kubectl apply -f``). ``ray-up`` writes a cluster config for ``ray up`` on AWS running the GPU image.
Images: ``deploy/Dockerfile.cpu`` and ``deploy/Dockerfile.gpu`` (build and push commands in deploy/README.md).

Exit status: 0, or 2 with one line naming the fix for bad input (an unknown target, a serve config that fails
validation or cannot run on the target, an --out folder that is not empty without --force), with nothing written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines._common import emit, fail

_COMMAND = "deploy render"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="render KubeRay manifests or a ray-up cluster config from the serve config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    r = verbs.add_parser(
        "render",
        help="write the manifests for a target",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--target", required=True, metavar="TARGET", help="kuberay or ray-up")
    r.add_argument("--out", default=".", metavar="DIR", help="folder to write into (default: .)")
    r.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    r.add_argument(
        "--serve-config",
        default=None,
        metavar="YAML",
        help="the serve config, inside the checkout (default deploy/serve-gpu.yaml)",
    )
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="serve config override",
    )
    r.add_argument(
        "--image", default=None, help="image every pod or node runs (default: automem's GPU image)"
    )
    r.add_argument("--name", default="automem", help="base name of the resources (default automem)")
    r.add_argument("--store", default=None, help="storage root (default: the bucket of lora.registry)")
    r.add_argument("--dataset", default=None, help="the training job's datasets/<id> folder")
    r.add_argument("--adapter", default="specialist-1", help="name the trained adapter is published under")
    r.add_argument("--region", default="us-west-2", help="AWS region (ray-up)")
    r.add_argument(
        "--serve-instance-type", default=None, help="AWS instance type of the serve nodes (ray-up)"
    )
    r.set_defaults(func=run_render)
    p.set_defaults(func=lambda _a: fail("deploy", "choose a verb: render"))


def run_render(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from automem.deploy import TARGETS, DeployError, RenderOptions, render, write_files

    if args.target not in TARGETS:
        return fail(_COMMAND, f"unknown target {args.target!r}; choose one of {', '.join(TARGETS)}")
    fields = {
        "target": args.target,
        "serve_overrides": tuple(args.overrides),
        "image": args.image,
        "name": args.name,
        "store": args.store,
        "dataset": args.dataset,
        "adapter": args.adapter,
        "region": args.region,
        "serve_instance_type": args.serve_instance_type,
    }
    if args.serve_config is not None:  # a path as the user typed it, from here
        fields["serve_config"] = str(Path(args.serve_config).resolve())
    try:
        files = render(RenderOptions(**fields))
        written = write_files(files, args.out, force=args.force)
    except ValidationError as exc:
        err = exc.errors()[0]
        return fail(_COMMAND, f"--{'-'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}")
    except DeployError as exc:
        return fail(_COMMAND, str(exc))
    for path in written:
        emit(f"{path}\n")
    return 0
