# Run: .venv/bin/python -m pytest tests/integration/test_cluster_config.py
"""ray_cluster.yaml validates against Ray's own cluster-launcher schema (what `ray up` runs), offline."""

from __future__ import annotations

import copy
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_is_valid_and_has_the_node_types():
    cfg = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    _validate(cfg)
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] == "head"
    assert {"cpu_rollout", "gpu_serve", "gpu_train"} <= set(types)
    assert types["cpu_rollout"]["max_workers"] > types["cpu_rollout"]["min_workers"]  # autoscaling
    assert all("RAY_AUTH_MODE=" in c for c in cfg["head_start_ray_commands"] if "ray start" in c)


def test_a_typo_is_rejected():
    cfg = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    cfg["available_node_types"]["gpu_serve"]["min_workerz"] = 1
    with pytest.raises(Exception, match="min_workerz"):
        _validate(cfg)
