"""Deployment manifests rendered from automem's configs: KubeRay custom resources and ``ray up`` cluster configs.

Plain dictionaries and YAML, no Ray (the library layer imports none). ``automem deploy render`` writes what
:func:`render` returns; :func:`check_manifests` finds what a CRD schema cannot see (images, the embedded serve
config, pod resources against Ray's, scale-from-zero). The container images and their names: :mod:`.images`.
"""

from __future__ import annotations

from automem.deploy.checks import check_manifests
from automem.deploy.images import CPU_IMAGE, GPU_IMAGE
from automem.deploy.render import TARGETS, DeployError, RenderOptions, render, write_files

__all__ = [
    "CPU_IMAGE",
    "GPU_IMAGE",
    "TARGETS",
    "DeployError",
    "RenderOptions",
    "check_manifests",
    "render",
    "write_files",
]
