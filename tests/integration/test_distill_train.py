# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_distill_train.py -s
"""Loop 2 training through Ray Train on the embedded model: the cpu-small preset, cut to a few steps on a tiny
dataset, runs TRL + PEFT on one TorchTrainer worker; the loss falls, the LoRA B matrices (zero at initialisation)
move, the adapter folder is what the serving side loads, and Ray Train kept the intermediate checkpoints that
RayTrainReportCallback reported. Then resume: a run on two workers killed (an injected failure) after its first
checkpoint, run again with the same config and output folder, continues from that checkpoint. About 1-2 minutes
per test on 2 cores (Ray Train's start-up ~12-30 s per run included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automem.training import ADAPTER_FILES, TRAINING_FILE, TrainingError, load_distill_config, train_adapter
from tests.support.training import write_dataset

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 4


def _tiny_config(tmp_path, **overrides):
    """The cpu-small preset on a 4-row dataset: STEPS steps, a checkpoint every 2, a high learning rate."""
    fixed = {
        "max_steps": STEPS,
        "learning_rate": 5.0e-3,
        "max_length": 128,
        "min_examples": 4,
        "save_steps": 2,
    }
    return load_distill_config(
        dataset=str(write_dataset(tmp_path, 4)),
        preset="cpu-small",
        overrides=[f"{k}={v}" for k, v in {**fixed, **overrides}.items()],
    )


def test_cpu_small_trains_a_lora_adapter_on_ray_train(ray_session, tmp_path):
    from safetensors.torch import load_file

    from actors.training import RayTrainLauncher

    # every step sees the same 4 examples: the loss must fall
    config = _tiny_config(tmp_path, batch_size=4, num_workers=1, threads_per_worker=2)
    result = train_adapter(config, tmp_path / "out", RayTrainLauncher(), progress=print)
    m = result.metrics
    print(
        json.dumps(
            {
                k: m[k]
                for k in ("losses", "train_tokens", "train_runtime_s", "train_tokens_per_s", "precision")
            }
        )
    )
    assert m["steps"] == STEPS and len(m["losses"]) == STEPS and m["examples"] == 4
    assert m["last_loss"] < m["first_loss"], m["losses"]
    assert m["train_tokens"] > 0 and m["train_tokens_per_s"] > 0

    adapter = result.adapter_dir
    assert adapter == tmp_path / "out" / "adapter"
    for name in (*ADAPTER_FILES, TRAINING_FILE):
        assert (adapter / name).is_file(), name
    lora = json.loads((adapter / "adapter_config.json").read_text())
    assert lora["r"] == 16 and sorted(lora["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert b and any(v.abs().sum() > 0 for v in b.values())  # LoRA B starts at zero: training moved it
    assert json.loads((adapter / TRAINING_FILE).read_text())["dataset_id"] == "test0000"

    # RayTrainReportCallback reported the Hugging Face checkpoints (steps 2 and 4) into Ray Train's storage.
    run = Path(result.storage_path) / result.run_name
    saved = sorted(run.glob("checkpoint_*/checkpoint/adapter_model.safetensors"))
    assert len(saved) >= 2, sorted(p.name for p in run.iterdir())
    # The run's automem_train_* metrics reached Prometheus through Ray's metrics agent (issue 18).
    from .test_metrics import check_training_metrics

    check_training_metrics(result)


def test_a_killed_run_resumes_from_its_last_checkpoint_on_two_workers(ray_session, tmp_path):
    from actors.training import RayTrainLauncher

    # 2 workers x 2: every step sees the 4 examples
    config = _tiny_config(tmp_path, batch_size=2, num_workers=2, threads_per_worker=1)
    out = tmp_path / "out"
    with pytest.raises(TrainingError, match="injected failure after step 2"):
        train_adapter(config, out, RayTrainLauncher(fail_after_step=2), progress=print)
    assert not (out / "adapter").exists()
    checkpoints = sorted(out.glob("checkpoints/distill-*/checkpoint_*/checkpoint/trainer_state.json"))
    assert [json.loads(p.read_text())["global_step"] for p in checkpoints] == [2]

    # The same command again: the same run name and storage, so Ray Train hands the workers that checkpoint.
    result = train_adapter(config, out, RayTrainLauncher(), progress=print)
    m = result.metrics
    print(
        json.dumps({k: m[k] for k in ("losses", "resumed_from_step", "steps_run", "world_size", "examples")})
    )
    assert (m["resumed_from_step"], m["steps_run"], m["steps"]) == (2, STEPS - 2, STEPS)
    assert (
        len(m["losses"]) == STEPS
    )  # the first attempt's two, restored from the checkpoint, and this one's two
    assert m["world_size"] == 2 and m["examples"] == 4  # every worker got the whole dataset from Ray Data
    assert m["train_tokens"] > 0
    assert all((result.adapter_dir / name).is_file() for name in (*ADAPTER_FILES, TRAINING_FILE))
