"""What a published adapter is: its PEFT settings (rank, base model) and its lineage (``training.json``).

``automem distill train`` writes ``<out>/adapter/training.json`` beside the PEFT files (dataset id, base model,
preset and config, losses, package version, time: ``automem/training/run.py``); the registry stores it with the
adapter, and ``automem model adapters`` shows one line per adapter from it. No Ray, no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
LINEAGE_FILE = "training.json"
_SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


class AdapterError(ValueError):
    """An adapter that cannot be published or served; the message names the fix."""


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter as the registry shows it."""

    name: str
    rank: int
    """LoRA rank ``r`` (the largest of ``rank_pattern``'s values too)."""
    base_model: str | None
    """The base model it was trained on: ``training.json``'s, else PEFT's ``base_model_name_or_path``."""
    lineage: dict[str, Any] | None = None
    """``training.json`` as written by training; None for an adapter made elsewhere."""

    def line(self) -> str:
        """``name  rank 16  dataset ds1  preset cpu-small  loss 2.35->1.99  created 2026-12-02T10:00:00+00:00``."""
        parts = [self.name, f"rank {self.rank}"]
        lin = self.lineage
        if lin is None:
            parts.append("no lineage (not trained by automem)")
            return "  ".join(parts)
        parts.append(f"dataset {lin.get('dataset_id') or lin.get('dataset') or '?'}")
        preset = lin.get("preset") or "?"
        overrides = lin.get("overrides")
        if overrides:
            preset += f" ({', '.join(overrides) if isinstance(overrides, list) else overrides})"
        parts.append(f"preset {preset}")
        metrics = lin.get("metrics") or {}
        first, last = metrics.get("first_loss"), metrics.get("last_loss")
        loss = f"loss {_num(first)}->{_num(last)}"
        if metrics.get("eval_loss") is not None:
            loss += f" (eval {_num(metrics['eval_loss'])})"
        parts.append(loss)
        parts.append(f"created {lin.get('created_at') or '?'}")
        return "  ".join(parts)


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "?"


def adapter_info(name: str, adapter_config: dict[str, Any], lineage: dict[str, Any] | None) -> AdapterInfo:
    """An :class:`AdapterInfo` from a parsed ``adapter_config.json`` (and ``training.json``).

    Raises:
        AdapterError: not a PEFT LoRA config (no ``peft_type: LORA`` or no integer rank ``r``).
    """
    if str(adapter_config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(
            f"{name}: adapter_config.json is not a PEFT LoRA config (peft_type "
            f"{adapter_config.get('peft_type')!r}); save the adapter with PEFT's save_pretrained"
        )
    rank = adapter_config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterError(f"{name}: adapter_config.json has no valid LoRA rank r ({rank!r})")
    pattern = adapter_config.get("rank_pattern") or {}
    rank = max([rank, *(v for v in pattern.values() if isinstance(v, int))])
    base = (lineage or {}).get("base_model") or adapter_config.get("base_model_name_or_path")
    return AdapterInfo(name=name, rank=rank, base_model=base, lineage=lineage)


def read_adapter(folder: str | Path, name: str | None = None) -> AdapterInfo:
    """Read a local adapter folder (PEFT files, ``training.json`` when present).

    Raises:
        AdapterError: a missing or unreadable file, or not a PEFT LoRA adapter (the message says what to do).
    """
    path = Path(folder)
    label = name or str(path)
    if not path.is_dir():
        raise AdapterError(
            f"{path} is not a folder: give the adapter folder (<out>/adapter of a training run)"
        )
    missing = [f for f in (ADAPTER_CONFIG, "adapter_model.safetensors") if not (path / f).is_file()]
    if missing:
        raise AdapterError(
            f"{path} is not a PEFT adapter folder (missing {', '.join(missing)}): give the folder PEFT's "
            "save_pretrained wrote (<out>/adapter of `automem distill train`)"
        )
    config = _read_json(path / ADAPTER_CONFIG, label)
    lineage = _read_json(path / LINEAGE_FILE, label) if (path / LINEAGE_FILE).is_file() else None
    return adapter_info(label, config, lineage)


def _read_json(file: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{label}: cannot read {file.name} ({exc})") from None
    if not isinstance(data, dict):
        raise AdapterError(f"{label}: {file.name} is not a JSON object")
    return data


def _name(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1].lower()


def _shape(model: str) -> tuple[Any, ...] | None:
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return tuple(data.get(k) for k in _SHAPE_KEYS)


def base_matches(adapter_base: str | None, target_base: str) -> bool:
    """Whether an adapter trained on ``adapter_base`` fits the endpoint's ``target_base``.

    Equal when the names agree (the last path component, case aside: a local copy of a hub model, or the embedded
    model prepared under another cache dir), or when both are local folders whose ``config.json`` shapes agree.
    An adapter that names no base model is given the benefit of the doubt.
    """
    if not adapter_base:
        return True
    if _name(adapter_base) == _name(target_base):
        return True
    a, t = _shape(adapter_base), _shape(target_base)
    return a is not None and a == t
