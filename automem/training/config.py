"""``DistillConfig``: what a Loop 2 training run does (dataset, base model, LoRA, schedule, workers, precision).

A config starts from a preset (a YAML file under ``presets/``: the paper's ``crafter``, ``minihack`` and ``nethack``,
and ``cpu-small`` for the embedded model), or from a YAML file of its own, plus ``key=value`` overrides
(:func:`load_distill_config`). Precision ``auto`` is resolved on the worker that trains, from what its device has
(:func:`choose_precision`): a driver without a GPU may launch workers that have one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from automem.config import ConfigError, StrictConfig, apply_overrides, parse_model, read_yaml

PRESETS_DIR = Path(__file__).with_name("presets")

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class DistillConfig(StrictConfig):
    """One training run of a LoRA memory specialist on a Loop 2 dataset."""

    dataset: str
    """The dataset folder ``<root>/datasets/<id>/`` written by ``automem distill dataset`` (a folder or ``s3://``)."""
    base_model: str | None = None
    """A local Hugging Face folder; None: the embedded SmolLM2-135M-Instruct (prepared from its package, no hub)."""
    preset: str | None = None
    """The preset this config started from (recorded for lineage; set by :func:`load_distill_config`)."""
    lora_rank: int = Field(16, ge=1)
    """LoRA rank ``r``."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling ``alpha`` (the update is scaled by alpha / rank)."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] | Literal["all-linear"] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get LoRA adapters, or ``all-linear`` (every linear layer but the output head)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the dataset (ignored when ``max_steps`` is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps to run; overrides ``epochs``. CPU runs are sized in steps."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate (linear decay)."""
    batch_size: int = Field(4, ge=1)
    """Examples per worker per step."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step."""
    max_length: int = Field(1024, ge=8)
    """Tokens per example (prompt plus completion); longer examples are dropped, never truncated."""
    num_workers: int = Field(1, ge=1)
    """Ray Train workers (data-parallel processes)."""
    use_gpu: bool = False
    """Train on GPUs (one per worker); False trains on CPUs."""
    threads_per_worker: int | None = Field(None, ge=1)
    """Torch threads per worker; None: the node's usable CPUs divided among the workers on it (CPU only)."""
    precision: Precision = "auto"
    """``auto``: fp32 on a CPU (measured faster for LoRA training than bf16 autocast, even on a CPU with
    avx512_bf16), bf16 on a GPU that supports it, else fp16; or one of ``fp32``, ``bf16``, ``fp16``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (saves memory on long sequences; slower, so off on CPUs)."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every N steps into the checkpoint storage (a killed run resumes from the last one); None: only
    the final adapter."""
    checkpoint_path: str | None = None
    """Ray Train's storage path for checkpoints (an absolute folder or ``s3://``); None: ``<out>/checkpoints``."""
    min_examples: int = Field(1, ge=1)
    """Refuse a dataset with fewer rows than this (the paper's presets: 300 / 600 / 800) unless ``force``."""
    force: bool = False
    """Train even on a dataset below ``min_examples``."""
    seed: int = 0
    """Seed of the data order and the LoRA initialisation."""

    @field_validator("target_modules", mode="before")
    @classmethod
    def _modules(cls, value: object) -> object:
        if isinstance(value, str) and value != "all-linear":
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if isinstance(self.target_modules, tuple) and not self.target_modules:
            raise ValueError("target_modules: name at least one module, or all-linear")
        if not self.use_gpu and self.precision == "fp16":
            raise ValueError("precision: fp16 needs a GPU (use bf16 or fp32 on a CPU)")
        return self


def preset_names() -> list[str]:
    """The presets shipped under ``presets/`` (file names without ``.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name``.

    Raises:
        ConfigError: no such preset (the message lists them).
    """
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(preset_names())}")
    return path


def load_distill_config(
    *,
    dataset: str | None = None,
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> DistillConfig:
    """A ``DistillConfig`` from a preset or a YAML file (or neither: the defaults), then ``key=value`` overrides.

    Args:
        dataset: the dataset folder (the ``--dataset`` flag); an override ``dataset=...`` wins over it.
        preset: a preset name (:func:`preset_names`); its YAML is the starting point and its name is recorded.
        path: a YAML file of DistillConfig fields (instead of a preset).

    Raises:
        ConfigError: an unknown preset, both a preset and a file, or an invalid field (named).
    """
    if preset and path:
        raise ConfigError("give a preset or a config file, not both")
    source = str(path) if path else f"preset {preset}" if preset else "<defaults>"
    file = preset_path(preset) if preset else path
    tree = dict(read_yaml(file) or {}) if file is not None else {}
    if preset:
        tree["preset"] = preset
    if dataset is not None:
        tree.setdefault("dataset", dataset)
    tree = apply_overrides(tree, overrides)
    return parse_model(DistillConfig, tree, source=source, what="training config")


def choose_precision(
    requested: str,
    *,
    use_gpu: bool,
    gpu_bf16: bool = False,
    cpu_flags: Iterable[str] = (),
) -> tuple[str, str]:
    """The training precision (``fp32``, ``bf16`` or ``fp16``) for a config's ``precision`` on a device.

    A pure function of what the device has, so tests can feed any machine. On a GPU, ``auto`` is bf16 where
    supported, else fp16 mixed precision. On a CPU it is fp32, whatever the CPU's flags: training is not
    inference (the serving engine's rule, :func:`automem.serving.cpu.choose_dtype`, picks bf16 on such CPUs).
    Measured on the 2-core CPU machine with ``avx512_bf16`` (benchmarks/training.py, cpu-small, ~660-token
    examples, 2 threads): plain TRL trained 153 tokens/s in fp32 against 106-123 with bf16 autocast. Autocast
    keeps fp32 master weights and casts around every op, and the LoRA matrices are too small for bf16 matmuls to
    pay for the casts. Not yet measured on a CPU with AMX: ask for ``bf16`` explicitly to try it.

    Returns:
        ``(precision, reason)``.
    """
    if requested != "auto":
        return requested, f"precision={requested} set in the config"
    if use_gpu:
        if gpu_bf16:
            return "bf16", "the GPU supports bf16"
        return "fp16", "the GPU has no bf16: fp16 mixed precision"
    have = set(cpu_flags)
    if have & {"avx512_bf16", "amx_bf16"}:
        return (
            "fp32",
            "a CPU: fp32, although it has bf16 instructions (measured: fp32 153 train tokens/s vs 106-123 with "
            "bf16 autocast on an avx512_bf16 CPU)",
        )
    return "fp32", "a CPU without bf16 instructions: fp32 (bf16 would only be converted)"
