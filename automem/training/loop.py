"""``train_loop``: what each training worker runs (TRL ``SFTTrainer`` with a PEFT LoRA config on one dataset).

The same function runs in-process (:class:`LocalHooks`, the plain-TRL baseline, reading the dataset file) and on
every Ray Train worker (``actors/training.py`` passes hooks that take the rows from Ray Data, report to Ray Train
and hand back its last checkpoint to resume from); the hooks are the only seam, so this module imports no Ray. A
resumed run continues from the checkpoint's global step (``resumed_from_step`` in the metrics). Settings TRL's ``SFTConfig`` defaults get wrong here are set for the device: its defaults assume a
GPU (``bf16=True``, ``gradient_checkpointing=True``), and under Ray Train's DDP ``ddp_find_unused_parameters`` must
be False (LoRA leaves the base weights without gradients). Loss falls on completion tokens only, TRL's default for
prompt-completion data (``assistant_only_loss`` fails with SmolLM2's chat template, which has no generation
markers).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from automem.serving.cpu import cpu_flags, usable_cpus
from automem.training.config import DistillConfig, choose_precision
from automem.training.data import DatasetRows, TrainingError, prompt_completion, read_rows

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""What ``save_pretrained`` writes for a LoRA adapter, and what the serving side loads."""


class TrainHooks(Protocol):
    """How a worker talks to whatever launched it (Ray Train, or nothing)."""

    world_rank: int
    """This worker's rank; rank 0 saves the adapter."""
    local_world_size: int
    """Workers on this node (they share its CPUs)."""

    def rows(self, config: DistillConfig) -> DatasetRows:
        """The rows this worker trains on (the whole dataset: the trainer splits batches among DDP ranks)."""
        ...

    def callbacks(self) -> list[Any]:
        """``transformers.TrainerCallback`` objects to add (Ray's report callback)."""
        ...

    def prepare(self, trainer: Any) -> Any:
        """The trainer, adapted to the launcher (Ray's ``prepare_trainer``)."""
        ...

    def resume_from(self) -> str | None:
        """A Hugging Face checkpoint folder to resume from, or None."""
        ...

    def finish(self, metrics: dict[str, Any], adapter_dir: str | None) -> None:
        """Called once by every worker at the end: the run's metrics, and on rank 0 the saved adapter's folder
        (deleted after this returns)."""
        ...


class LocalHooks:
    """Hooks of an in-process run with no launcher: the adapter is copied to ``out``, the metrics kept."""

    world_rank = 0
    local_world_size = 1

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.metrics: dict[str, Any] = {}

    def rows(self, config: DistillConfig) -> DatasetRows:
        return read_rows(config.dataset, min_examples=config.min_examples, force=config.force)

    def callbacks(self) -> list[Any]:
        return []

    def prepare(self, trainer: Any) -> Any:
        return trainer

    def resume_from(self) -> str | None:
        return None

    def finish(self, metrics: dict[str, Any], adapter_dir: str | None) -> None:
        self.metrics = metrics
        if adapter_dir is not None:
            shutil.copytree(adapter_dir, self.out, dirs_exist_ok=True)


def threads_for(config: DistillConfig, local_world_size: int) -> int:
    """Torch threads of one CPU worker: the config's, else the node's usable CPUs shared among its workers."""
    if config.threads_per_worker:
        return config.threads_per_worker
    return max(1, len(usable_cpus()) // max(1, local_world_size))


def train_loop(config_dict: dict[str, Any], hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Train a LoRA adapter as ``config_dict`` (a dumped :class:`DistillConfig`, ``base_model`` resolved) says.

    Args:
        config_dict: ``DistillConfig.model_dump(mode="json")`` with ``base_model`` a local folder.
        hooks: the launcher's seam (default: :class:`LocalHooks` writing to a temporary folder).

    Returns:
        The run's metrics: ``train_loss``, ``losses`` (one per logged step), ``first_loss``, ``last_loss``,
        ``steps`` (the global step reached), ``resumed_from_step`` (0 unless resumed from a checkpoint),
        ``steps_run`` (by this attempt), ``train_tokens`` (this attempt's), ``train_runtime_s``,
        ``train_tokens_per_s``, ``train_cpu_s`` (this process's CPU seconds in ``train()``), ``examples``,
        ``dropped_too_long``, ``precision`` and its reason, ``threads``, ``world_size``, ``dataset_id``.

    Raises:
        TrainingError: no base model folder, too few examples, or none within ``max_length``.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    config = DistillConfig.model_validate(config_dict)
    if not config.base_model:
        raise TrainingError("train_loop needs base_model resolved to a folder (train_adapter does it)")
    hooks = hooks or LocalHooks(tempfile.mkdtemp(prefix="automem-adapter-"))
    threads = None
    if not config.use_gpu:
        threads = threads_for(config, hooks.local_world_size)
        torch.set_num_threads(threads)
    gpu_bf16 = bool(config.use_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    precision, why = choose_precision(
        config.precision, use_gpu=config.use_gpu, gpu_bf16=gpu_bf16, cpu_flags=cpu_flags()
    )

    data = hooks.rows(config)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    examples, dropped = prompt_completion(data.rows, tokenizer, config.max_length)
    if not examples:
        raise TrainingError(
            f"{config.dataset}: all {len(data.rows)} examples are longer than max_length={config.max_length} "
            "tokens; raise max_length"
        )
    set_seed(config.seed)
    # Master weights in fp32 (mixed precision autocasts); a GPU run in bf16 loads bf16 weights to halve memory.
    dtype = torch.bfloat16 if (config.use_gpu and precision == "bf16") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    work = tempfile.mkdtemp(prefix="automem-train-")
    try:
        args = SFTConfig(
            output_dir=work,
            max_steps=config.max_steps or -1,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type="linear",
            logging_steps=1,
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not config.use_gpu,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            gradient_checkpointing=config.gradient_checkpointing,
            max_length=config.max_length,
            ddp_find_unused_parameters=False,
            seed=config.seed,
            data_seed=config.seed,
        )
        modules = list(config.target_modules) if isinstance(config.target_modules, tuple) else "all-linear"
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=modules,
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=hooks.callbacks(),
        )
        trainer = hooks.prepare(trainer)
        resume = hooks.resume_from()
        resumed_from_step = checkpoint_step(resume) if resume else 0
        cpu0 = time.process_time()
        output = trainer.train(resume_from_checkpoint=resume)
        metrics = _metrics(trainer.state.log_history, output, resumed_from_step)
        metrics.update(
            # This process's CPU time (all its threads) while training: tokens per CPU-second compares runs on a
            # shared machine, where wall-clock tokens/s mostly measures the neighbours.
            train_cpu_s=time.process_time() - cpu0,
            examples=len(examples),
            dropped_too_long=dropped,
            precision=precision,
            precision_reason=why,
            threads=threads,
            world_size=int(trainer.args.world_size),
            dataset_id=data.dataset_id,
        )
        if hooks.world_rank == 0:
            with tempfile.TemporaryDirectory(prefix="automem-adapter-") as saved:
                trainer.model.save_pretrained(saved)
                hooks.finish(metrics, saved)
        else:
            hooks.finish(metrics, None)
        return metrics
    finally:
        shutil.rmtree(work, ignore_errors=True)


def checkpoint_step(folder: str) -> int:
    """The global step a Hugging Face checkpoint folder was saved at (its ``trainer_state.json``), 0 if unknown."""
    state = Path(folder) / "trainer_state.json"
    if not state.is_file():
        return 0
    return int(json.loads(state.read_text()).get("global_step", 0))


def _metrics(history: list[dict[str, Any]], output: Any, resumed_from_step: int = 0) -> dict[str, Any]:
    """The figures of a finished run from the trainer's log history and ``train()``'s output.

    After a resume the history holds the earlier attempts' entries too (restored from the checkpoint): the losses
    cover the whole run, the tokens only this attempt's steps (TRL's ``num_tokens`` counter starts from 0 in each
    trainer, trl 1.16), so that tokens/s is over this attempt's ``train_runtime``.
    """
    losses = [float(h["loss"]) for h in history if "loss" in h]
    tokens = max(
        (
            float(h["num_tokens"])
            for h in history
            if "num_tokens" in h and int(h.get("step", 0)) > resumed_from_step
        ),
        default=0.0,
    )
    runtime = float(output.metrics.get("train_runtime", 0.0))
    return {
        "train_loss": float(output.training_loss),
        "losses": losses,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": int(output.global_step),
        "resumed_from_step": resumed_from_step,
        "steps_run": int(output.global_step) - resumed_from_step,
        "train_tokens": int(tokens),
        "train_runtime_s": runtime,
        "train_tokens_per_s": tokens / runtime if runtime > 0 else None,
    }
