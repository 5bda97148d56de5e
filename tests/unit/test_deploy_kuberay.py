# Run: .venv/bin/python -m pytest tests/unit/test_deploy_kuberay.py
"""The KubeRay manifests in deploy/kuberay/: what `automem deploy render --target kuberay` writes with defaults,
valid against KubeRay 1.7.0's vendored CRD schemas (strictly: an unknown field, which Kubernetes would silently
prune, is an error), and right where the schema cannot see (automem.deploy.checks)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from automem.deploy import CPU_IMAGE, GPU_IMAGE, RenderOptions, check_manifests, render
from automem.deploy.checks import ray_resources
from automem.deploy.kuberay import SERVE_APP_IMPORT_PATH
from automem.serving.config import load_config

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "deploy/kuberay"
SCHEMAS = {"RayCluster": "raycluster", "RayJob": "rayjob", "RayService": "rayservice"}
IMAGES = {CPU_IMAGE, GPU_IMAGE}


def strict_schema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema that rejects unknown fields.

    ``x-kubernetes-int-or-string`` accepts an integer or a string; an object with ``properties`` admits no other
    keys unless ``x-kubernetes-preserve-unknown-fields`` says so (what ``kubectl --validate=strict`` enforces;
    without it Kubernetes drops a misspelt field silently). Other ``x-kubernetes-*`` keys only annotate.
    """
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in ("anyOf", "allOf", "oneOf"):
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


_VALIDATORS: dict[str, jsonschema.Draft7Validator] = {}


def validator(kind: str) -> jsonschema.Draft7Validator:
    if kind not in _VALIDATORS:
        raw = json.loads((KUBERAY / "schemas" / f"{SCHEMAS[kind]}.json").read_text())
        _VALIDATORS[kind] = jsonschema.Draft7Validator(strict_schema(raw))
    return _VALIDATORS[kind]


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    errors = validator(manifest["kind"]).iter_errors(manifest)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def checked_in() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(KUBERAY.glob("*.yaml"))}


def test_the_checked_in_files_are_what_render_writes_with_defaults():
    files = render(RenderOptions(target="kuberay"))
    assert sorted(files) == sorted(p.name for p in KUBERAY.glob("*.yaml"))
    for name, text in files.items():
        assert (KUBERAY / name).read_text() == text, (
            f"deploy/kuberay/{name} is stale: automem deploy render --target kuberay --out deploy/kuberay --force"
        )


def test_the_vendored_schemas_are_of_the_release_the_manifests_name():
    from automem.deploy.kuberay import KUBERAY_VERSION

    notes = (KUBERAY / "schemas/README.md").read_text()
    assert f"**{KUBERAY_VERSION}**" in notes
    assert "Apache License" in (KUBERAY / "schemas/LICENSE").read_text()
    assert sum(p.stat().st_size for p in (KUBERAY / "schemas").iterdir()) < 3_000_000


def test_the_kinds_are_there():
    kinds = sorted(m["kind"] for m in checked_in().values())
    assert kinds == ["RayCluster", "RayJob", "RayJob", "RayJob", "RayService"]


@pytest.mark.parametrize("name", sorted(p.name for p in KUBERAY.glob("*.yaml")))
def test_each_manifest_validates_against_the_kuberay_schema(name):
    manifest = checked_in()[name]
    assert manifest["apiVersion"] == "ray.io/v1"
    assert schema_errors(manifest) == []


def test_the_strict_schema_rejects_a_typo_and_a_wrong_type():
    service = checked_in()["rayservice.yaml"]
    typo = copy.deepcopy(service)
    typo["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 0
    assert any("minReplica" in e for e in schema_errors(typo))
    wrong = copy.deepcopy(service)
    wrong["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    assert schema_errors(wrong)
    ok = copy.deepcopy(service)  # int-or-string: a quantity may be either
    ok["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ]["cpu"] = 4
    assert schema_errors(ok) == []


def test_the_checks_pass_on_the_checked_in_files():
    assert check_manifests(checked_in(), IMAGES, load_config(ROOT / "deploy/serve-gpu.yaml")) == []


def test_the_serve_config_in_the_rayservice_is_serve_gpu_yaml():
    service = checked_in()["rayservice.yaml"]
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == SERVE_APP_IMPORT_PATH
    from automem.serving.config import parse_config

    assert parse_config(app["args"]["config"]) == load_config(ROOT / "deploy/serve-gpu.yaml")


def test_the_gpu_groups_scale_from_zero_and_match_the_serve_config():
    cfg = load_config(ROOT / "deploy/serve-gpu.yaml")
    cluster = checked_in()["rayservice.yaml"]["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    (group,) = cluster["workerGroupSpecs"]
    assert group["minReplicas"] == 0 and group["maxReplicas"] == cfg.deployment.autoscaling.max_replicas
    assert group["rayStartParams"]["num-gpus"] == str(cfg.engine.tensor_parallel_size)
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == str(cfg.engine.tensor_parallel_size)
    assert ray_resources(group["rayStartParams"]) == {f"accelerator_type:{cfg.accelerator_type}": 1.0}
    train = checked_in()["rayjob-distill-train.yaml"]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert [(g["minReplicas"], g["rayStartParams"]["num-gpus"]) for g in train] == [(0, "1")]


def test_the_jobs_run_real_commands_on_the_offered_resources():
    jobs = {n: m for n, m in checked_in().items() if m["kind"] == "RayJob"}
    entry = {n: m["spec"]["entrypoint"] for n, m in jobs.items()}
    assert entry["rayjob-rollout.yaml"].startswith("automem rollout ")
    assert "--runner-resource rollout=0.01" in entry["rayjob-rollout.yaml"]
    assert "http://automem-serve-svc:8000/v1" in entry["rayjob-rollout.yaml"]
    assert entry["rayjob-distill-train.yaml"].startswith("automem distill train ")
    assert " && automem model publish " in entry["rayjob-distill-train.yaml"]
    assert entry["rayjob-evolve.yaml"].startswith("automem evolve ")
    assert all(m["spec"]["shutdownAfterJobFinishes"] for m in jobs.values())


def _mutated(path: list[Any], value: Any, name: str = "rayservice.yaml") -> dict[str, dict[str, Any]]:
    manifests = checked_in()
    node = manifests[name]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return manifests


_GROUP = ["spec", "rayClusterConfig", "workerGroupSpecs", 0]
_CONTAINER = [*_GROUP, "template", "spec", "containers", 0]


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        ([*_GROUP, "minReplicas"], 1, "scale from 0"),
        ([*_GROUP, "rayStartParams", "num-gpus"], "1", "num-gpus"),
        ([*_GROUP, "rayStartParams", "num-cpus"], "4", "num-cpus"),
        (
            [*_GROUP, "rayStartParams", "resources"],
            '"{\\"accelerator_type:A100\\": 1}"',
            "no worker group fits",
        ),
        ([*_GROUP, "maxReplicas"], 2, "scales to 8"),
        ([*_CONTAINER, "image"], "nginx:latest", "nginx"),
        ([*_CONTAINER, "env"], [], "RAY_AUTH_MODE"),
        (["spec", "rayClusterConfig", "enableInTreeAutoscaling"], False, "enableInTreeAutoscaling"),
    ],
)
def test_the_checks_find_what_the_schema_cannot_see(path, value, expect):
    problems = check_manifests(_mutated(path, value), IMAGES)
    assert any(expect in p for p in problems), problems
    assert all(schema_errors(m) == [] for m in _mutated(path, value).values())  # the schema sees none of it


def test_a_misspelt_serve_field_in_the_rayservice_is_found():
    service = checked_in()["rayservice.yaml"]
    text = service["spec"]["serveConfigV2"].replace("min_replicas:", "min_replica:", 1)
    problems = check_manifests(_mutated(["spec", "serveConfigV2"], text), IMAGES)
    assert any("min_replica" in p for p in problems), problems


def test_a_job_asking_for_a_resource_no_group_offers_is_found():
    job = checked_in()["rayjob-rollout.yaml"]
    entry = job["spec"]["entrypoint"].replace("rollout=0.01", "rollouts=0.01")
    problems = check_manifests(_mutated(["spec", "entrypoint"], entry, "rayjob-rollout.yaml"), IMAGES)
    assert any("rollouts" in p for p in problems), problems
