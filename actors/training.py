"""Ray Train around automem's training function: ``TorchTrainer`` workers each run ``train_loop`` with TRL.

``RayTrainLauncher`` is the :class:`automem.training.Launcher` that ``automem distill train`` uses: one Ray Train
worker per ``num_workers`` (1 CPU each, plus a GPU with ``use_gpu``), gloo or NCCL DDP set up by Ray, checkpoints
through Ray Train's storage (a folder or ``s3://``) under a run name derived from the dataset and config. The
workers' seam is :class:`RayTrainHooks`: TRL's trainer gets Ray's ``RayTrainReportCallback`` (metrics and the
Hugging Face checkpoint at each save) and ``prepare_trainer``; at the end every worker reports once (Ray's
``report`` is a barrier) and rank 0's report carries the final adapter, which the driver copies out of the
run's latest checkpoint. Measured on the 2-core machine: 1 worker runs at ~0.9x plain TRL, plus ~12-30 s start-up.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray.train
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from actors.cluster import connect_ray
from automem import env_vars
from automem.training import TrainingError
from automem.trajectory.storage import aws_credentials, s3_filesystem

FINAL_ADAPTER = "adapter"
"""The folder, inside the final Ray checkpoint, that holds the trained adapter."""
CPUS_PER_WORKER = 1


class RayTrainHooks:
    """The training function's hooks on a Ray Train worker (see :class:`automem.training.TrainHooks`)."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.world_rank = context.get_world_rank()
        self.local_world_size = context.get_local_world_size()

    def callbacks(self) -> list[Any]:
        from ray.train.huggingface.transformers import RayTrainReportCallback

        return [RayTrainReportCallback()]

    def prepare(self, trainer: Any) -> Any:
        from ray.train.huggingface.transformers import prepare_trainer

        return prepare_trainer(trainer)

    def resume_from(self) -> str | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        # RayTrainReportCallback stores the Hugging Face checkpoint under checkpoint/.
        folder = Path(checkpoint.to_directory()) / "checkpoint"
        return str(folder) if folder.is_dir() else None

    def finish(self, metrics: dict[str, Any], adapter_dir: str | None) -> None:
        if adapter_dir is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="automem-final-") as tmp:
            shutil.copytree(adapter_dir, Path(tmp) / FINAL_ADAPTER)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


def _train_worker(config_dict: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    from automem.training import train_loop

    train_loop(config_dict, RayTrainHooks())


class RayTrainLauncher:
    """Launches the training function on Ray Train (the cluster ``address`` names, a running local one, or a new
    one)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.last_result: Any = None

    def launch(
        self, config_dict: dict[str, Any], *, storage_path: str, run_name: str, adapter_out: Path
    ) -> dict[str, Any]:
        env = env_vars.forwarded(env_vars.AWS_ENDPOINT_URL)
        env.update(aws_credentials())
        connect_ray(self.address, env=env)
        use_gpu = bool(config_dict.get("use_gpu"))
        storage: dict[str, Any] = {"storage_path": storage_path}
        if storage_path.startswith("s3://"):
            # pyarrow's S3FileSystem ignores AWS_ENDPOINT_URL: pass a filesystem that honours it.
            storage = {"storage_path": storage_path[len("s3://") :], "storage_filesystem": s3_filesystem()}
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=config_dict,
            scaling_config=ScalingConfig(
                num_workers=int(config_dict.get("num_workers") or 1),
                use_gpu=use_gpu,
                resources_per_worker={"CPU": CPUS_PER_WORKER, **({"GPU": 1} if use_gpu else {})},
            ),
            run_config=RunConfig(name=run_name, **storage),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            raise TrainingError(f"the Ray Train run {run_name} failed: {_first_cause(exc)}") from exc
        self.last_result = result
        if result.checkpoint is None:
            raise TrainingError(f"the Ray Train run {run_name} reported no checkpoint")
        with result.checkpoint.as_directory() as folder:
            source = Path(folder) / FINAL_ADAPTER
            if not source.is_dir():
                raise TrainingError(f"the last checkpoint of {run_name} holds no final adapter")
            shutil.copytree(source, adapter_out, dirs_exist_ok=True)
        return dict(result.metrics or {})


def _first_cause(exc: BaseException) -> str:
    """A worker's own error message (a TrainingError raised in train_loop), else the first line of ``exc``."""
    failures = getattr(exc, "worker_failures", None) or {}
    for failure in failures.values():
        text = str(failure).strip()
        for line in reversed(text.splitlines()):
            if "TrainingError" in line:
                return line.split("TrainingError:", 1)[-1].strip()
        return text.splitlines()[-1] if text else type(failure).__name__
    return str(exc).strip().splitlines()[0]
