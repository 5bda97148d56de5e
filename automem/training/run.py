"""``train_adapter``: one training run from config to adapter folder, over a launcher (Ray Train, or in-process).

The run's lifecycle lives here, where it can be tested without Ray: check the dataset (complete, at least
``min_examples`` rows) and the output folder before anything starts, resolve the base model (the embedded one is
prepared from its package when needed), launch, then move the adapter into ``<out>/adapter/`` with its
``training.json`` (config, metrics, dataset id, base model) written last, so a folder without it is unfinished.
Checkpoints go to ``checkpoint_path`` (default ``<out>/checkpoints``) under a run name derived from the dataset and
the config, so launching the same run again finds the same checkpoints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import automem
from automem.training.config import DistillConfig
from automem.training.data import TrainingError, read_rows
from automem.training.loop import ADAPTER_FILES, LocalHooks, train_loop

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
TRAINING_FILE = "training.json"


class Launcher(Protocol):
    """Runs :func:`automem.training.loop.train_loop` somewhere and brings the adapter back."""

    def launch(
        self, config_dict: dict[str, Any], *, storage_path: str, run_name: str, adapter_out: Path
    ) -> dict[str, Any]:
        """Train; put the adapter's files into ``adapter_out`` (an existing empty folder); return the metrics.

        Raises:
            TrainingError: the run failed (the message says why).
        """
        ...


class LocalLauncher:
    """Runs the training function in this process (the plain-TRL baseline; no checkpoints)."""

    def launch(
        self, config_dict: dict[str, Any], *, storage_path: str, run_name: str, adapter_out: Path
    ) -> dict[str, Any]:
        hooks = LocalHooks(adapter_out)
        return train_loop(config_dict, hooks)


@dataclass(frozen=True)
class TrainResult:
    """A finished training run."""

    adapter_dir: Path
    """``<out>/adapter``: ``adapter_config.json``, ``adapter_model.safetensors``, ``training.json``."""
    metrics: dict[str, Any]
    """What :func:`automem.training.loop.train_loop` returned (rank 0's)."""
    dataset_id: str
    run_name: str
    storage_path: str
    """Where the checkpoints are."""
    config: DistillConfig
    """The config as run (``base_model`` resolved)."""


def resolve_base_model(base_model: str | None, progress: Callable[[str], None] | None = None) -> str:
    """A local model folder: ``base_model`` checked, or the embedded model (prepared once from its package).

    Raises:
        TrainingError: ``base_model`` is not a folder with a ``config.json``, or the embedded package is missing.
    """
    if base_model:
        if not (Path(base_model) / "config.json").is_file():
            raise TrainingError(
                f"base model {base_model}: not a Hugging Face model folder (no config.json); give a local "
                "folder, or leave base_model unset for the embedded model"
            )
        return str(Path(base_model).resolve())
    from automem.llm.embedded import prepare_embedded_model

    try:
        return str(prepare_embedded_model(progress=progress))
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None


def run_name(config: DistillConfig, dataset_id: str) -> str:
    """``distill-<dataset id>-<hash of the config>``: the same run gets the same name (and checkpoints)."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return f"distill-{dataset_id or 'dataset'}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def _absolute(path: str) -> str:
    """A local path made absolute; a URI (``s3://``) as it is."""
    return path if "://" in path else str(Path(path).resolve())


def train_adapter(
    config: DistillConfig,
    out: str | Path,
    launcher: Launcher,
    *,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the adapter ``config`` describes with ``launcher``; write it to ``<out>/adapter/``.

    Args:
        config: the run (a preset plus overrides).
        out: a local folder; it gets ``adapter/`` and, unless ``checkpoint_path`` is set, ``checkpoints/``.
        launcher: where the training function runs (``actors.training.RayTrainLauncher``, or
            :class:`LocalLauncher`).
        progress: one-line progress messages (default: silent).

    Raises:
        TrainingError: an incomplete or too small dataset, an ``<out>/adapter`` already there, a base model not
            found, or a failed run; nothing is left in ``<out>/adapter`` then.
    """
    say = progress or (lambda _msg: None)
    data = read_rows(config.dataset, min_examples=config.min_examples, force=config.force)
    out = Path(out).resolve()
    target = out / ADAPTER_DIR
    if target.exists():
        raise TrainingError(f"{target} already exists: choose another --out, or remove it")
    base = resolve_base_model(config.base_model, say)
    # Workers may run in another working directory: hand them absolute local paths.
    config = config.model_copy(
        update={
            "base_model": base,
            "dataset": _absolute(config.dataset),
            "checkpoint_path": _absolute(config.checkpoint_path or str(out / CHECKPOINTS_DIR)),
        }
    )
    storage_path = str(config.checkpoint_path)
    name = run_name(config, data.dataset_id)
    say(f"training on {len(data.rows)} examples of dataset {data.dataset_id or config.dataset}; run {name}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ADAPTER_DIR}.", dir=out))
    try:
        metrics = launcher.launch(
            config.model_dump(mode="json"), storage_path=storage_path, run_name=name, adapter_out=tmp
        )
        missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
        if missing:
            raise TrainingError(f"the run finished without an adapter (missing {', '.join(missing)})")
        record = {
            "dataset_id": data.dataset_id,
            "dataset": config.dataset,
            "base_model": base,
            "preset": config.preset,
            "config": config.model_dump(mode="json"),
            "metrics": metrics,
            "run_name": name,
            "checkpoints": storage_path,
            "automem_version": automem.__version__,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        # Last: an adapter folder without training.json is unfinished.
        (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TrainResult(target, metrics, data.dataset_id, name, storage_path, config)
