# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_zz_loop2_chain.py -s
"""Loop 2 end to end, through the commands a user runs: a stub-model rollout fills a store, `automem distill
dataset` selects its memory turns, `automem distill train` fits a LoRA adapter on Ray Train (a few steps of the
cpu-small preset), the adapter is published to the real embedded endpoint's registry, `automem distill eval` compares it with its base
on a held-out seed's memory turns through that endpoint (into the ledger), and a two-model rollout
(`--memory-model <base>:<name>`) commits episodes whose memory turns the specialist answered.

(Named to run after the serve tests, which start the shared endpoint.) About 4-6 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from automem.trajectory import load as load_store

from .conftest import run_cli as _cli

pytestmark = [pytest.mark.serve, pytest.mark.e2e, pytest.mark.ray, pytest.mark.slow]

ADAPTER = "loop2-chain"


def test_rollout_dataset_train_publish_and_two_model_rollout(embedded_endpoint, stub_model, tmp_path):
    import ray
    from safetensors.torch import load_file

    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "AUTOMEM_API_KEY": embedded_endpoint.api_key, "RAY_AUTH_MODE": "disabled"}
    store = tmp_path / "store"

    # 1. A stub-model rollout: every memory turn appends a note (a well-formed memory decision).
    stub = stub_model()
    common = ["--env", "crafter-v0", "--address", address, "--no-progress", "--out", str(store)]
    _cli(
        "rollout", *common, "--episodes", "4", "--concurrency", "2", "--max-steps", "4", "--seeds", "1-4",
        "--endpoint", stub.url, "--model", "stub", "--run-id", "stub-1",
        env=env,
    )  # fmt: skip

    # 2. The dataset: well-formed memory turns, seed 4 held out.
    res = _cli(
        "distill", "dataset", "--from", str(store), "--strategy", "wellformed", "--holdout-seeds", "4",
        "--out", str(tmp_path / "data"),
        env=env,
    )  # fmt: skip
    folder = Path(re.search(r"dataset \w+ \((\d+) rows, written\): (\S+)", res.stdout).group(2))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] >= 8, res.stdout
    assert "4" in str(manifest["holdout_seeds"]), manifest

    # 3. Training: a few steps on one Ray Train worker.
    res = _cli(
        "distill", "train", "--dataset", str(folder), "--preset", "cpu-small", "--out", str(tmp_path / "train"),
        "--address", address,
        "max_steps=4", "learning_rate=5.0e-3", "num_workers=1", "threads_per_worker=2",
        "min_examples=8",
        env=env,
    )  # fmt: skip
    losses = re.search(r"train loss: ([\d.]+) -> ([\d.]+)", res.stdout)
    assert losses and float(losses.group(2)) < float(losses.group(1)), res.stdout
    adapter = tmp_path / "train" / "adapter"
    b = {k: v for k, v in load_file(str(adapter / "adapter_model.safetensors")).items() if "lora_B" in k}
    assert b and any(v.abs().sum() > 0 for v in b.values())  # LoRA B starts at zero: training moved it
    lineage = json.loads((adapter / "training.json").read_text())
    assert lineage["dataset_id"] == manifest["dataset_id"]

    # 4. Published to the running endpoint, which serves it by name (a merged copy) without a restart.
    name = embedded_endpoint.publish(adapter, ADAPTER)
    assert name == f"{embedded_endpoint.model_id}:{ADAPTER}"

    # 5. The turn-level evaluation of the tiny adapter against its base on the held-out seed's memory turns, through
    # the endpoint (both models, with and without the grammar), into the store's ledger.
    res = _cli(
        "distill", "eval", "--from", str(store), "--run", "stub-1", "--seeds", "4", "--adapter", ADAPTER,
        "--limit", "3", "--endpoint", embedded_endpoint.base_url, "--model", embedded_endpoint.model_id,
        "--json", str(tmp_path / "eval.json"),
        env=env,
    )  # fmt: skip
    assert re.search(r"free\s+wellformed_share\s+[\d.]+\s+[\d.]+\s+[+-][\d.]+", res.stdout), res.stdout
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert len(evaluation["comparisons"]) == 12 and evaluation["comparisons"][0]["turns"] == 3
    answered = {(s["model"], s["mode"]) for s in evaluation["scores"]}
    assert answered == {
        (m, mode) for m in (embedded_endpoint.model_id, name) for mode in ("constrained", "free")
    }
    # Without the grammar SmolLM2 writes prose; the specialist, trained on the stub's notes, writes operations.
    free = {s["model"]: s["wellformed_share"] for s in evaluation["scores"] if s["mode"] == "free"}
    assert free[name] > free[embedded_endpoint.model_id], evaluation["scores"]
    [share] = [
        c for c in evaluation["comparisons"] if (c["mode"], c["metric"]) == ("free", "wellformed_share")
    ]
    assert share["diff"] > 0 and share["adapter"] == 1.0, share
    rows = _cli(
        "query", str(store), "SELECT adapter, dataset_id, seeds, turns FROM ledger", "--json", env=env
    )
    [row] = json.loads(rows.stdout)
    assert row["adapter"] == name and row["seeds"] == "4" and row["turns"] == 3, rows.stdout

    # 6. A two-model rollout: the specialist answers the memory turns, the base model picks the actions.
    _cli(
        "rollout", *common, "--episodes", "1", "--max-steps", "2", "--seeds", "7",
        "--endpoint", embedded_endpoint.base_url, "--model", embedded_endpoint.model_id, "--memory-model", name,
        "--run-id", "two-model",
        env=env,
    )  # fmt: skip
    tables = load_store(str(store), run_id="two-model")
    episodes = tables["episodes"].to_pylist()
    assert len(episodes) == 1 and episodes[0]["memory_model"] == name
    assert episodes[0]["action_model"] == embedded_endpoint.model_id
    turns = tables["turns"].to_pylist()
    memory = [t for t in turns if t["phase"] in ("log", "plan")]
    assert memory and all(t["model"] == name and t["completion_tokens"] > 0 for t in memory)
    actions = [t for t in turns if t["phase"] == "action"]
    assert actions and all(t["model"] == embedded_endpoint.model_id for t in actions)
