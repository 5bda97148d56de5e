"""Distill, train: a LoRA memory specialist on a Loop 2 dataset, with TRL + PEFT on Ray Train.

    automem distill train --dataset data/datasets/<id> --preset cpu-small --out adapters/first
    automem distill train --dataset data/datasets/<id> --preset cpu-small max_steps=10 num_workers=1 --out /tmp/a
    ray job submit --working-dir . -- automem distill train --dataset s3://bucket/loop2/datasets/<id> \
        --preset crafter checkpoint_path=s3://bucket/checkpoints --out /tmp/crafter-1

Overrides are ``key=value`` fields of ``DistillConfig`` (``automem/training/config.py``). Prints the train loss
(first and last step), train tokens/s, and the adapter's folder (``<out>/adapter/``: ``adapter_config.json``,
``adapter_model.safetensors``, then ``training.json``, written last). Exit status: 0, or 2 for bad input (not a
complete dataset, fewer rows than the preset's ``min_examples`` without ``force=true``, an unknown field or preset,
a base model that is not a model folder, an ``<out>/adapter`` already there, a ``lora_rank`` the serve config
cannot load), with nothing written there.

``--serve-config`` names the endpoint the adapter is for (default: the embedded endpoint's config): when it serves
adapters as LoRA (``lora.serve_as: lora``), a ``lora_rank`` above its ``lora.max_rank`` is refused before training
starts (vLLM's engine dies on such an adapter); the message names the ``lora.max_rank`` to set. Training the same
command again after a killed run resumes from the run's last checkpoint (``save_steps``; same ``--out`` and
overrides, so the same run name and checkpoint storage).
"""

from __future__ import annotations

import argparse

from pipelines._common import fail, say

_COMMAND = "distill train"


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``train`` to ``automem distill``'s verbs."""
    t = verbs.add_parser(
        "train",
        help="train a LoRA memory specialist on a dataset (Ray Train, TRL + PEFT)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--dataset", required=True, metavar="DIR", help="a datasets/<id>/ folder (or s3://)")
    t.add_argument(
        "--preset", help="crafter, minihack, nethack or cpu-small (default: the config's defaults)"
    )
    t.add_argument("--config", metavar="YAML", help="a DistillConfig YAML file instead of a preset")
    t.add_argument(
        "--out", required=True, metavar="DIR", help="output folder: gets adapter/ and checkpoints/"
    )
    t.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, a running local one, or a new one)"
    )
    t.add_argument(
        "--serve-config",
        metavar="YAML",
        help="the serve config the adapter is for; its lora.max_rank bounds lora_rank (default: the embedded one)",
    )
    t.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="DistillConfig fields, e.g. max_steps=10"
    )
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from actors.training import RayTrainLauncher
    from automem.config import ConfigError
    from automem.training import TrainingError, load_distill_config, train_adapter

    try:
        config = load_distill_config(
            dataset=args.dataset, preset=args.preset, path=args.config, overrides=args.overrides
        )
        check_serve_rank(config.lora_rank, args.serve_config)
        result = train_adapter(config, args.out, RayTrainLauncher(args.address), progress=say)
    except (ConfigError, TrainingError) as exc:
        return fail(_COMMAND, str(exc))
    m = result.metrics
    print(f"train loss: {m.get('first_loss')} -> {m.get('last_loss')} over {m.get('steps')} steps")
    speed = m.get("train_tokens_per_s")
    print(
        f"train tokens: {m.get('train_tokens')} in {m.get('train_runtime_s', 0):.1f} s"
        + (f" ({speed:.0f} tokens/s)" if speed else "")
        + f", {m.get('precision')}, {m.get('world_size')} worker(s)"
    )
    print(f"adapter: {result.adapter_dir}")
    return 0


def check_serve_rank(rank: int, serve_config: str | None) -> None:
    """Refuse a LoRA ``rank`` that the serve config (a YAML path; None: the embedded one) cannot load.

    Raises:
        TrainingError: the rank is above the config's ``lora.max_rank`` while it serves adapters as LoRA (the
            message names the value to set).
        ConfigError: the serve config does not load.
    """
    from automem.serving.adapters import check_rank_fits
    from automem.serving.config import load_config
    from automem.training import TrainingError

    serve = load_config(serve_config)
    try:
        check_rank_fits(rank, serve)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
