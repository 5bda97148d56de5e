# Run: .venv/bin/python -m pytest tests/unit/test_deploy_cli.py
"""`automem deploy render`: writes the manifests for a target; bad input is one line on stderr, exit status 2,
nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automem.deploy import GPU_IMAGE
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
KUBERAY_FILES = [
    "raycluster.yaml",
    "rayjob-distill-train.yaml",
    "rayjob-evolve.yaml",
    "rayjob-rollout.yaml",
    "rayservice.yaml",
]


def _render(*args: str) -> int:
    return main(["deploy", "render", *args])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("automem deploy render: ")
    return err


def test_kuberay_defaults_equal_the_checked_in_files(tmp_path, capsys):
    assert _render("--target", "kuberay", "--out", str(tmp_path / "k8s")) == 0
    assert sorted(p.name for p in (tmp_path / "k8s").iterdir()) == KUBERAY_FILES
    for name in KUBERAY_FILES:
        assert (tmp_path / "k8s" / name).read_text() == (ROOT / "deploy/kuberay" / name).read_text()
    assert capsys.readouterr().out.count("\n") == len(KUBERAY_FILES)


def test_options_reach_the_manifests(tmp_path):
    out = tmp_path / "k8s"
    code = _render(
        "--target", "kuberay", "--out", str(out), "--image", "registry.example.com/am:1-gpu", "--name", "mem",
        "--set", "engine.tensor_parallel_size=4", "--store", "s3://b/p", "--dataset", "s3://b/p/loop2/datasets/d1",
    )  # fmt: skip
    assert code == 0
    service = yaml.safe_load((out / "rayservice.yaml").read_text())
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["rayStartParams"]["num-gpus"] == "4"
    assert group["template"]["spec"]["containers"][0]["image"] == "registry.example.com/am:1-gpu"
    train = yaml.safe_load((out / "rayjob-distill-train.yaml").read_text())["spec"]["entrypoint"]
    assert (
        "--dataset s3://b/p/loop2/datasets/d1" in train and "checkpoint_path=s3://b/p/checkpoints/" in train
    )
    assert "http://mem-serve-svc:8000/v1" in (out / "rayjob-rollout.yaml").read_text()


def test_force_replaces_only_the_rendered_files(tmp_path):
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert _render("--target", "kuberay", "--out", str(out), "--force") == 0
    assert (out / "mine.txt").read_text() == "keep"
    assert _render("--target", "kuberay", "--out", str(out), "--force") == 0


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--target", "helm"], "unknown target"),
        (["--target", "kuberay", "--set", "engine.tensor_parallel_size=0"], "tensor_parallel_size"),
        (["--target", "kuberay", "--set", "deployment.autoscaling.min_replica=1"], "min_replica"),
        (["--target", "kuberay", "--serve-config", "deploy/serve-embedded.yaml"], "server.host"),
        (["--target", "kuberay", "--set", "lora.registry=embedded"], "registry"),
        (["--target", "kuberay", "--set", "lora.serve_as=merged"], "lora.serve_as 'merged'"),
        (["--target", "kuberay", "--set", "model.source=embedded"], "model.source 'embedded'"),
        (["--target", "kuberay", "--serve-config", "deploy/no-such.yaml"], "no-such.yaml"),
        (["--target", "kuberay", "--name", "Bad_Name"], "name"),
        (["--target", "ray-up", "--serve-config", "deploy/serve-embedded.yaml"], "accelerator: gpu"),
        (["--target", "ray-up", "--set", "accelerator_type=TPU-V9"], "--serve-instance-type"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, expect):
    out = tmp_path / "out"
    assert _render(*args, "--out", str(out)) == 2
    assert expect in _one_error_line(capsys)
    assert not out.exists()


def test_a_serve_config_outside_the_checkout_is_refused(tmp_path, capsys):
    outside = tmp_path / "serve.yaml"
    outside.write_text((ROOT / "deploy/serve-gpu.yaml").read_text())
    assert _render("--target", "kuberay", "--serve-config", str(outside), "--out", str(tmp_path / "o")) == 2
    assert "outside the checkout" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_a_folder_that_is_not_empty_needs_force(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("mine")
    assert _render("--target", "kuberay", "--out", str(tmp_path)) == 2
    assert "--force" in _one_error_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["x.yaml"]


def test_ray_up_writes_one_cluster_config_sized_from_the_serve_config(tmp_path):
    assert _render("--target", "ray-up", "--out", str(tmp_path)) == 0
    cfg = yaml.safe_load((tmp_path / "ray-cluster.yaml").read_text())
    assert cfg["docker"]["image"] == GPU_IMAGE
    serve = cfg["available_node_types"]["gpu_serve"]
    assert serve["node_config"]["InstanceType"] == "g6.12xlarge"  # L4, 2 GPUs per replica: the 4-GPU size
    assert serve["min_workers"] == 0 and serve["max_workers"] == 8
    assert all("RAY_AUTH_MODE=disabled ray start" in c for c in cfg["head_start_ray_commands"][1:])


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["deploy", "render", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "kuberay" in out and "ray-up" in out and "--force" in out and "Exit status" in out
