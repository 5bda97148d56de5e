# Run: .venv/bin/python -m pytest tests/unit/test_distill_train_config.py
"""Loop 2 training without Ray and without training: DistillConfig is strict, the presets load with the paper's
figures, precision follows the device, a dataset below ``min_examples`` is refused unless forced, examples too long
are dropped, and ``train_adapter``'s lifecycle (checks first, ``adapter/`` with ``training.json`` last) on a fake
launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automem.config import ConfigError
from automem.training import (
    ADAPTER_FILES,
    TRAINING_FILE,
    DistillConfig,
    TrainingError,
    choose_precision,
    load_distill_config,
    preset_names,
    prompt_completion,
    read_rows,
    train_adapter,
)
from tests.support.training import write_dataset

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def test_the_four_presets_load_with_the_papers_figures():
    assert set(preset_names()) >= {"crafter", "minihack", "nethack", "cpu-small"}
    crafter = load_distill_config(dataset="d", preset="crafter")
    assert (crafter.lora_rank, crafter.lora_alpha, crafter.epochs, crafter.min_examples) == (256, 512, 4, 300)
    assert crafter.target_modules == ATTENTION and crafter.preset == "crafter"
    minihack = load_distill_config(dataset="d", preset="minihack")
    assert (minihack.lora_rank, minihack.lora_alpha, minihack.epochs, minihack.min_examples) == (
        128,
        256,
        3,
        600,
    )
    assert minihack.target_modules == "all-linear"
    nethack = load_distill_config(dataset="d", preset="nethack")
    assert (nethack.lora_rank, nethack.lora_alpha, nethack.epochs, nethack.min_examples) == (256, 512, 1, 800)
    assert nethack.target_modules == "all-linear"
    small = load_distill_config(dataset="d", preset="cpu-small")
    assert 8 <= small.lora_rank <= 16 and small.target_modules == ATTENTION
    assert small.max_steps is not None and small.max_steps <= 50
    # Real Crafter memory prompts are ~1,100-1,200 tokens: a shorter limit drops every example.
    assert 1200 <= small.max_length <= 2048
    # One sequence per forward pass (real turns at batch 4 took ~10 GB a worker), 4 per optimizer step.
    assert small.batch_size == 1 and small.gradient_accumulation_steps == 4
    assert not small.use_gpu and small.base_model is None  # the embedded model


def test_overrides_apply_and_unknown_keys_are_refused(tmp_path):
    config = load_distill_config(
        dataset="d", preset="cpu-small", overrides=["max_steps=3", "target_modules=q_proj,v_proj"]
    )
    assert config.max_steps == 3 and config.target_modules == ("q_proj", "v_proj")
    with pytest.raises(ConfigError, match="lora_rnak: unknown field"):
        load_distill_config(dataset="d", preset="cpu-small", overrides=["lora_rnak=8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: d\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat: unknown field"):
        load_distill_config(path=bad)
    with pytest.raises(ConfigError, match="unknown preset 'gpu-huge'.*cpu-small"):
        load_distill_config(dataset="d", preset="gpu-huge")
    with pytest.raises(ConfigError, match="dataset"):
        load_distill_config(preset="cpu-small")  # no dataset anywhere
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        load_distill_config(dataset="d", overrides=["precision=fp16"])
    with pytest.raises(Exception, match="frozen"):
        config.lora_rank = 4  # type: ignore[misc]


def test_every_field_is_documented():
    undocumented = [name for name, f in DistillConfig.model_fields.items() if not f.description]
    assert not undocumented


@pytest.mark.parametrize(
    ("requested", "gpu", "gpu_bf16", "flags", "expected"),
    [
        # fp32 on every CPU, bf16 instructions or not: on the 2-core avx512_bf16 machine plain TRL trained
        # 153 tokens/s in fp32 against 106-123 with bf16 autocast (benchmarks/training.py).
        ("auto", False, False, {"avx512f", "avx512_bf16"}, "fp32"),
        ("auto", False, False, {"amx_bf16"}, "fp32"),
        ("auto", False, False, {"avx512f", "avx2"}, "fp32"),
        ("bf16", False, False, {"avx512_bf16"}, "bf16"),  # still there when asked for
        ("auto", False, False, set(), "fp32"),
        ("auto", True, True, set(), "bf16"),
        ("auto", True, False, set(), "fp16"),
        ("fp32", True, True, set(), "fp32"),
    ],
)
def test_precision_follows_the_device(requested, gpu, gpu_bf16, flags, expected):
    precision, reason = choose_precision(requested, use_gpu=gpu, gpu_bf16=gpu_bf16, cpu_flags=flags)
    assert precision == expected and reason


def test_a_dataset_below_min_examples_is_refused_unless_forced(tmp_path):
    folder = write_dataset(tmp_path, 5)
    with pytest.raises(TrainingError, match=r"5 examples, below min_examples=32.*force=true"):
        read_rows(str(folder), min_examples=32)
    assert len(read_rows(str(folder), min_examples=32, force=True).rows) == 5
    data = read_rows(str(folder))
    assert data.dataset_id == "test0000" and data.rows[0]["messages"][0]["role"] == "system"
    unfinished = write_dataset(tmp_path, 5, "nomanifest", manifest=False)
    with pytest.raises(TrainingError, match="not a complete dataset"):
        read_rows(str(unfinished))


class _Tokenizer:
    """Enough of a tokenizer for prompt_completion: one token per word."""

    eos_token = "<eos>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return " ".join(m["content"] for m in messages) + " ASSISTANT: "

    def __call__(self, text, add_special_tokens):
        return {"input_ids": text.split()}


def test_examples_longer_than_max_length_are_dropped_not_cut():
    rows = [
        {"messages": [{"role": "user", "content": "short"}], "completion": "READ a.md\nDONE"},
        {"messages": [{"role": "user", "content": "w " * 50}], "completion": "READ a.md\nDONE"},
    ]
    examples, dropped = prompt_completion(rows, _Tokenizer(), max_length=10)
    assert dropped == 1
    assert examples == [{"prompt": "short ASSISTANT: ", "completion": "READ a.md\nDONE"}]


class _FakeLauncher:
    def __init__(self):
        self.calls = []

    def launch(self, config_dict, *, storage_path, run_name, adapter_out):
        self.calls.append((config_dict, storage_path, run_name))
        for name in ADAPTER_FILES:
            (adapter_out / name).write_text("{}")
        return {"first_loss": 2.0, "last_loss": 1.5}


def _base(tmp_path: Path) -> str:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    return str(base)


def test_train_adapter_checks_first_and_writes_the_adapter_with_its_record_last(tmp_path):
    folder = write_dataset(tmp_path, 4)
    launcher = _FakeLauncher()
    small = load_distill_config(
        dataset=str(folder), preset="cpu-small", overrides=[f"base_model={_base(tmp_path)}"]
    )
    with pytest.raises(TrainingError, match="below min_examples=32"):
        train_adapter(small, tmp_path / "out", launcher)
    assert not launcher.calls and not (tmp_path / "out").exists()
    with pytest.raises(TrainingError, match="not a Hugging Face model folder"):
        train_adapter(
            small.model_copy(update={"force": True, "base_model": str(tmp_path)}), tmp_path / "o", launcher
        )
    result = train_adapter(small.model_copy(update={"force": True}), tmp_path / "out", launcher)
    (config_dict, storage_path, run_name) = launcher.calls[0]
    assert config_dict["base_model"] == small.base_model and storage_path == str(tmp_path / "out/checkpoints")
    assert run_name.startswith("distill-test0000-")
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == sorted([*ADAPTER_FILES, TRAINING_FILE])
    record = json.loads((result.adapter_dir / TRAINING_FILE).read_text())
    assert record["dataset_id"] == "test0000" and record["preset"] == "cpu-small"
    assert record["metrics"]["last_loss"] == 1.5
    with pytest.raises(TrainingError, match="already exists"):
        train_adapter(small.model_copy(update={"force": True}), tmp_path / "out", launcher)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["adapter"]  # no temporary folder left


def test_the_cli_refuses_a_small_dataset_with_exit_2(tmp_path, capsys):
    from pipelines.cli import main

    folder = write_dataset(tmp_path, 3)
    code = main(
        ["distill", "train", "--dataset", str(folder), "--preset", "cpu-small", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "automem distill train:" in err and "below min_examples=32" in err
    code = main(["distill", "train", "--dataset", str(folder), "--out", str(tmp_path / "o"), "lora_rnak=2"])
    assert code == 2 and "lora_rnak: unknown field" in capsys.readouterr().err


def test_metrics_of_a_resumed_run_count_only_this_attempts_tokens(tmp_path):
    from types import SimpleNamespace

    from automem.training.loop import _metrics, checkpoint_step

    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert checkpoint_step(str(tmp_path)) == 2 and checkpoint_step(str(tmp_path / "none")) == 0
    # Steps 1-2 restored from the checkpoint; TRL's num_tokens counter restarts at 0 in the new trainer.
    history = [
        {"step": 1, "loss": 3.0, "num_tokens": 100.0},
        {"step": 2, "loss": 2.0, "num_tokens": 200.0},
        {"step": 3, "loss": 1.5, "num_tokens": 90.0},
        {"step": 4, "loss": 1.0, "num_tokens": 180.0},
    ]
    output = SimpleNamespace(training_loss=1.2, global_step=4, metrics={"train_runtime": 9.0})
    m = _metrics(history, output, resumed_from_step=2)
    assert (m["steps"], m["resumed_from_step"], m["steps_run"]) == (4, 2, 2)
    assert m["losses"] == [3.0, 2.0, 1.5, 1.0]
    assert m["train_tokens"] == 180 and m["train_tokens_per_s"] == 20.0


def test_the_cli_refuses_a_rank_the_serve_config_cannot_load(tmp_path, capsys):
    try:
        from automem.serving.adapters import check_rank_fits  # noqa: F401
    except ImportError:
        pytest.skip("automem.serving.adapters.check_rank_fits is not there yet (another change adds it)")
    from pipelines.cli import main

    folder = write_dataset(tmp_path, 3)
    serve = tmp_path / "serve.yaml"
    serve.write_text("lora:\n  serve_as: lora\n  max_rank: 8\n")
    argv = [
        "distill",
        "train",
        "--dataset",
        str(folder),
        "--preset",
        "cpu-small",
        "--out",
        str(tmp_path / "o"),
    ]
    code = main([*argv, "--serve-config", str(serve)])  # cpu-small trains rank 16
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "automem distill train:" in err and "lora.max_rank=16" in err
    assert not (tmp_path / "o").exists()
    # Rank 8 fits; the embedded config (merged copies) takes any rank: both go on to the dataset check.
    assert main([*argv, "--serve-config", str(serve), "lora_rank=8"]) == 2
    assert "below min_examples" in capsys.readouterr().err
    assert main(argv) == 2 and "below min_examples" in capsys.readouterr().err
