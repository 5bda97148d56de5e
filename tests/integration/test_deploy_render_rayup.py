# Run: .venv/bin/python -m pytest tests/integration/test_deploy_render_rayup.py
"""What `automem deploy render` writes, read by Ray's own code, offline: the ray-up config passes Ray's cluster
launcher validation, and Ray's KubeRay autoscaler derives from each rendered cluster the node types meant (GPU
groups from zero, the custom resources the jobs and replicas ask for)."""

from __future__ import annotations

import copy

import pytest
import yaml

from automem.deploy import RenderOptions, render


def _validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_the_ray_up_config_is_valid_for_ray():
    cfg = yaml.safe_load(render(RenderOptions(target="ray-up"))["ray-cluster.yaml"])
    _validate(cfg)
    assert {"cpu_rollout", "gpu_serve", "gpu_train"} <= set(cfg["available_node_types"])


def test_a_typo_in_the_ray_up_config_is_rejected_by_ray():
    cfg = yaml.safe_load(render(RenderOptions(target="ray-up"))["ray-cluster.yaml"])
    cfg["available_node_types"]["gpu_serve"]["min_workerz"] = 0
    with pytest.raises(Exception, match="min_workerz"):
        _validate(cfg)


def _node_types(manifest):
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    spec = manifest["spec"]
    cluster = {"RayService": "rayClusterConfig", "RayJob": "rayClusterSpec"}.get(manifest["kind"])
    cr = {"metadata": {"name": "x", "namespace": "default"}, "spec": spec[cluster] if cluster else spec}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def test_rays_kuberay_autoscaler_sees_the_groups_as_rendered():
    files = {n: yaml.safe_load(t) for n, t in render(RenderOptions(target="kuberay")).items()}
    serve = _node_types(files["rayservice.yaml"])
    assert serve["headgroup"]["resources"]["CPU"] == 0
    gpu = serve["gpu-serve"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == 8
    assert gpu["resources"]["GPU"] == 2 and gpu["resources"]["accelerator_type:L4"] == 1
    rollout = _node_types(files["rayjob-rollout.yaml"])["cpu-rollout"]
    assert rollout["resources"]["rollout"] == 1 and rollout["resources"]["CPU"] == 16
    train = _node_types(files["rayjob-distill-train.yaml"])["gpu-train"]
    assert train["min_workers"] == 0 and train["resources"]["GPU"] == 1
    assert set(_node_types(files["raycluster.yaml"])) == {
        "headgroup",
        "cpu-rollout",
        "gpu-serve",
        "gpu-train",
    }
