"""Loop 2 training: a LoRA memory specialist trained with TRL + PEFT on a dataset from ``automem.distill``.

- ``DistillConfig`` (strict; presets under ``presets/``: ``crafter``, ``minihack``, ``nethack``, ``cpu-small``),
  ``load_distill_config(dataset=..., preset=..., overrides=[...])``.
- ``train_adapter(config, out, launcher)``: the run's lifecycle (checks, base model, launch, ``<out>/adapter/``);
  ``LocalLauncher`` runs in-process, ``actors.training.RayTrainLauncher`` on Ray Train.
- ``train_loop(config_dict, hooks)``: what each worker runs; the hooks are its only tie to a launcher.
"""

from automem.training.config import (
    DistillConfig,
    choose_precision,
    load_distill_config,
    preset_names,
    preset_path,
)
from automem.training.data import DatasetRows, TrainingError, prompt_completion, read_rows
from automem.training.loop import ADAPTER_FILES, LocalHooks, TrainHooks, train_loop
from automem.training.run import (
    ADAPTER_DIR,
    TRAINING_FILE,
    Launcher,
    LocalLauncher,
    TrainResult,
    resolve_base_model,
    run_name,
    train_adapter,
)

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_FILES",
    "TRAINING_FILE",
    "DatasetRows",
    "DistillConfig",
    "Launcher",
    "LocalHooks",
    "LocalLauncher",
    "TrainHooks",
    "TrainResult",
    "TrainingError",
    "choose_precision",
    "load_distill_config",
    "preset_names",
    "preset_path",
    "prompt_completion",
    "read_rows",
    "resolve_base_model",
    "run_name",
    "train_adapter",
    "train_loop",
]
