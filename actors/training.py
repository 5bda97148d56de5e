"""Ray Train around automem's training function: ``TorchTrainer`` workers each run ``train_loop`` with TRL.

``RayTrainLauncher`` is the :class:`automem.training.Launcher` that ``automem distill train`` uses: one Ray Train
worker per ``num_workers`` (1 CPU each, plus a GPU with ``use_gpu``), gloo or NCCL DDP set up by Ray, the rows
delivered by Ray Data (``rows.parquet`` read by Ray, every worker given all of them: the trainer splits batches
among ranks), checkpoints through Ray Train's storage (a folder or ``s3://``) under a run name derived from the
dataset and config. Resume: Ray Train V2 (the default in Ray 2.60) reloads the checkpoint list of a run whose name
and storage path it finds already used, so the same command after a killed run hands every worker that run's last
checkpoint (``ray.train.get_checkpoint``) and TRL continues from its global step, optimizer and scheduler. The
workers' seam is :class:`RayTrainHooks`: TRL's trainer gets Ray's ``RayTrainReportCallback`` (metrics and the
Hugging Face checkpoint at each save) and ``prepare_trainer``; at the end every worker reports once (Ray's
``report`` is a barrier) and rank 0's report carries the final adapter, which the driver copies out of the
run's latest checkpoint. Measured on the 2-core machine (benchmarks/training.py --steps 4, fp32, 2 threads, quiet
minutes): one worker trained at 0.94-0.95 of plain TRL's tokens/s (0.96 with the DDP wrapper it no longer gets, whose
CPU per token was ~3-5% higher), plus ~20-25 s start-up. In busy minutes the wall-clock ratio swung from 0.5 to 4 with
whatever the neighbours took; tokens per CPU-second stayed within ~5%.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray.data
import ray.train
from ray.train import Checkpoint, DataConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from actors.cluster import connect_ray
from actors.metrics import RayMetrics
from automem import env_vars
from automem.training import DatasetRows, DistillConfig, TrainingError
from automem.training.data import parse_rows, read_manifest, rows_path
from automem.trajectory.storage import aws_credentials, s3_filesystem

FINAL_ADAPTER = "adapter"
"""The folder, inside the final Ray checkpoint, that holds the trained adapter."""
CPUS_PER_WORKER = 1
TRAIN_DATASET = "train"
"""The Ray Data dataset's name in ``TorchTrainer(datasets=...)`` and ``get_dataset_shard``."""


class RayTrainHooks:
    """The training function's hooks on a Ray Train worker (see :class:`automem.training.TrainHooks`).

    Args:
        dataset_id: the dataset's id (from its manifest, read by the driver).
        fail_after_step: fault injection for tests only: raise once the trainer has finished (and saved) this
            global step, unless this attempt resumed from a checkpoint.
        run_name: the Ray Train run's name, the ``run`` tag of the ``automem_train_*`` metrics (rank 0 records
            them).
    """

    def __init__(self, dataset_id: str = "", fail_after_step: int | None = None, run_name: str = "") -> None:
        context = ray.train.get_context()
        self.world_rank = context.get_world_rank()
        self.local_world_size = context.get_local_world_size()
        self.dataset_id = dataset_id
        self.fail_after_step = fail_after_step
        self.run_name = run_name

    def rows(self, config: DistillConfig) -> DatasetRows:
        # Every worker gets the whole (small) dataset from Ray Data, unsplit: under DDP the Hugging Face trainer
        # already splits each epoch's batches among the ranks (one seeded shuffle); a Ray Data split on top would
        # have each rank train on a fraction of its own shard, half the data per epoch with two workers.
        shard = ray.train.get_dataset_shard(TRAIN_DATASET)
        return DatasetRows(self.dataset_id, parse_rows(shard.iter_rows()))

    def callbacks(self) -> list[Any]:
        from ray.train.huggingface.transformers import RayTrainReportCallback

        from automem.training.metrics import metrics_callback

        callbacks: list[Any] = [RayTrainReportCallback()]
        if self.world_rank == 0:
            callbacks.append(metrics_callback(RayMetrics(), self.run_name))
        if self.fail_after_step is not None and ray.train.get_checkpoint() is None:
            callbacks.append(_fail_after(self.fail_after_step))
        return callbacks

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


def _fail_after(step: int) -> Any:
    """A ``TrainerCallback`` that raises when step ``step + 1`` begins (after step ``step`` was saved and
    reported): fault injection for the resume test."""
    from transformers import TrainerCallback

    class FailAfterStep(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= step:
                raise RuntimeError(
                    f"injected failure after step {state.global_step} (fail_after_step={step})"
                )

    return FailAfterStep()


def _train_worker(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    from automem.training import train_loop

    hooks = RayTrainHooks(
        loop_config["dataset_id"], loop_config.get("fail_after_step"), loop_config.get("run_name", "")
    )
    train_loop(loop_config["config"], hooks)


class RayTrainLauncher:
    """Launches the training function on Ray Train (the cluster ``address`` names, a running local one, or a new
    one)."""

    def __init__(self, address: str | None = None, *, fail_after_step: int | None = None) -> None:
        self.address = address
        self.fail_after_step = fail_after_step
        """Fault injection for tests only (see :class:`RayTrainHooks`)."""
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
        dataset = str(config_dict["dataset"])
        dataset_id = str(read_manifest(dataset).get("dataset_id", ""))
        workers = int(config_dict.get("num_workers") or 1)
        # One worker has no one to synchronise with: DataParallelTrainer starts it without a torch process group,
        # so the HF trainer runs single-process (no DDP wrapper, no gloo all-reduce or metric gathers per step).
        trainer_cls = TorchTrainer if workers > 1 else DataParallelTrainer
        trainer = trainer_cls(
            _train_worker,
            train_loop_config={
                "config": config_dict,
                "dataset_id": dataset_id,
                "fail_after_step": self.fail_after_step,
                "run_name": run_name,
            },
            datasets={TRAIN_DATASET: _read_rows_dataset(dataset)},
            # Unsplit, in file order: see RayTrainHooks.rows.
            dataset_config=DataConfig(datasets_to_split=[], execution_options=_ordered()),
            scaling_config=ScalingConfig(
                num_workers=workers,
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


def _read_rows_dataset(dataset: str) -> Any:
    """A Ray Data dataset over the dataset folder's ``rows.parquet`` (a folder or ``s3://``, endpoint honoured)."""
    path = rows_path(dataset)
    columns = ["messages", "completion"]
    if path.startswith("s3://"):
        # pyarrow's S3FileSystem ignores AWS_ENDPOINT_URL: pass a filesystem that honours it.
        return ray.data.read_parquet(path[len("s3://") :], filesystem=s3_filesystem()).select_columns(columns)
    return ray.data.read_parquet(path).select_columns(columns)


def _ordered() -> Any:
    """Ray Train's default ingest options, with the rows kept in file order (the same data order as a local
    run of the same seed)."""
    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


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
