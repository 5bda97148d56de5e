"""The adapter registry: where LoRA adapters live so that the endpoint serves them by name.

An adapter ``<name>`` is a folder ``<registry uri>/<name>/`` holding ``adapter_config.json`` and
``adapter_model.safetensors`` (what PEFT's ``save_pretrained`` writes). Ray Serve LLM loads adapters from a cloud URI
only, so the registry is an ``s3://bucket/prefix``; the embedded default is a local S3-compatible server
(``automem.serving.local_s3``) filled from a local folder (:func:`local_adapters_dir`) each time it starts, so that
adapters survive a restart of the endpoint. Clients request ``<base model id>:<name>``.

An adapter's lineage (``training.json``, written by ``automem distill train``) is stored beside it. Upload order
makes a listed adapter complete: the weights, then the lineage, then ``adapter_config.json`` (what listing and the
ingress look for). How the endpoint serves an adapter (vLLM's LoRA, or a merged copy) is the serve config's
``lora.serve_as``; :func:`check_rank_fits` refuses an adapter the LoRA engine cannot hold.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automem import env_vars
from automem.llm.embedded import cache_dir
from automem.serving.config import EMBEDDED, MAX_LORA_RANKS, ServeConfig
from automem.serving.lineage import LINEAGE_FILE, AdapterError, AdapterInfo, adapter_info, base_matches

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
OPTIONAL_FILES = (LINEAGE_FILE,)
"""Stored with the adapter when present: its lineage."""
EMBEDDED_BUCKET = "automem-adapters"
EMBEDDED_PREFIX = "lora"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid adapter name (letters, digits, ``_.-``; no ``:`` or ``/``), else raise."""
    if not _NAME.match(name):
        raise ValueError(f"bad adapter name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return name


def check_adapter_dir(local_dir: str | Path) -> Path:
    """Return ``local_dir`` if it holds a PEFT adapter (both required files), else raise ``FileNotFoundError``."""
    path = Path(local_dir)
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a PEFT adapter folder: missing {', '.join(missing)}")
    return path


class AdapterExists(AdapterError):
    """The name is taken in the registry; publishing again needs ``replace``."""


def smallest_max_rank(rank: int) -> int | None:
    """The smallest value vLLM accepts for ``max_lora_rank`` that holds ``rank``; None above 512."""
    return next((r for r in MAX_LORA_RANKS if r >= rank), None)


def check_rank_fits(rank: int, cfg: ServeConfig) -> None:
    """Refuse an adapter of ``rank`` that the endpoint described by ``cfg`` cannot serve.

    Only a config that serves adapters as LoRA limits the rank (``lora.max_rank``, vLLM's ``max_lora_rank``): an
    adapter above it kills the engine (``EngineDeadError``) on first use. Merged copies take any rank.

    Raises:
        ValueError: naming ``lora.max_rank`` and the value to set (the smallest vLLM accepts that holds ``rank``),
            or saying that no value does (above 512: serve it merged, or train a lower rank).
    """
    if not cfg.serves_lora or rank <= cfg.lora.max_rank:
        return
    fit = smallest_max_rank(rank)
    if fit is None:
        raise ValueError(
            f"adapter rank {rank} is above vLLM's largest max_lora_rank ({MAX_LORA_RANKS[-1]}): serve it merged "
            "(lora.serve_as=merged) or train a lower lora_rank"
        )
    raise ValueError(
        f"adapter rank {rank} is above the endpoint's lora.max_rank ({cfg.lora.max_rank}): set lora.max_rank={fit} "
        f"in the serve config (or train with lora_rank<={cfg.lora.max_rank})"
    )


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (no trailing slash)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class AdapterRegistry:
    """Adapters under an ``s3://bucket/prefix`` URI.

    Args:
        uri: ``s3://bucket/prefix``.
        endpoint_url: S3-compatible endpoint; default ``AWS_ENDPOINT_URL`` (None: AWS itself).
        credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for this registry (a local server's); None
            uses boto3's usual chain (environment, profile, instance role).
    """

    uri: str
    endpoint_url: str | None = None
    credentials: dict[str, str] | None = None

    def _client(self) -> Any:
        import boto3

        creds = self.credentials or {}
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url or env_vars.AWS_ENDPOINT_URL.get(),
            region_name=env_vars.AWS_DEFAULT_REGION.get(),
            aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for local servers; real buckets are made by their owners)."""
        client = self._client()
        bucket, _ = split_s3(self.uri)
        try:
            client.head_bucket(Bucket=bucket)
        except client.exceptions.ClientError:
            client.create_bucket(Bucket=bucket)

    def _key(self, name: str, file: str) -> str:
        _, prefix = split_s3(self.uri)
        return f"{prefix}/{name}/{file}" if prefix else f"{name}/{file}"

    def exists(self, name: str) -> bool:
        """Whether adapter ``name`` is listed (its ``adapter_config.json`` exists)."""
        client = self._client()
        bucket, _ = split_s3(self.uri)
        try:
            client.head_object(Bucket=bucket, Key=self._key(check_name(name), REQUIRED_FILES[0]))
        except client.exceptions.ClientError:
            return False
        return True

    def publish(self, local_dir: str | Path, name: str, *, replace: bool = True) -> str:
        """Upload a PEFT adapter folder (and its ``training.json``) as ``name``, listed only once complete.

        The weights and the lineage go first, ``adapter_config.json`` last: the ingress and :meth:`list` see an
        adapter once that file exists. Replacing first removes the old ``adapter_config.json`` (unlisting it), so
        nobody loads a mix of old and new files.

        Args:
            replace: overwrite an adapter of that name (False: refuse with :class:`AdapterExists`).

        Returns:
            The adapter's URI (clients request ``<base id>:<name>``).
        """
        path = check_adapter_dir(local_dir)
        check_name(name)
        client = self._client()
        bucket, _ = split_s3(self.uri)
        if self.exists(name):
            if not replace:
                raise AdapterExists(
                    f"adapter {name!r} already exists in {self.uri}: pass --replace to overwrite it"
                )
            for file in (REQUIRED_FILES[0], *OPTIONAL_FILES):
                client.delete_object(Bucket=bucket, Key=self._key(name, file))
        for file in (REQUIRED_FILES[1], *OPTIONAL_FILES, REQUIRED_FILES[0]):
            if (path / file).is_file():
                client.upload_file(str(path / file), bucket, self._key(name, file))
        return f"{self.uri.rstrip('/')}/{name}"

    def list(self) -> list[str]:
        """Names of the adapters in the registry (folders holding ``adapter_config.json``), sorted."""
        client = self._client()
        bucket, prefix = split_s3(self.uri)
        start = f"{prefix}/" if prefix else ""
        names: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(start) :]
                name, _, file = rest.partition("/")
                if file == REQUIRED_FILES[0]:
                    names.add(name)
        return sorted(names)

    def fingerprints(self) -> dict[str, str]:
        """``{name: fingerprint}`` of the listed adapters: their files' ETags, which change when they are replaced."""
        client = self._client()
        bucket, prefix = split_s3(self.uri)
        start = f"{prefix}/" if prefix else ""
        tags: dict[str, dict[str, str]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
            for obj in page.get("Contents", []):
                name, _, file = obj["Key"][len(start) :].partition("/")
                if file in REQUIRED_FILES:
                    tags.setdefault(name, {})[file] = str(obj.get("ETag", ""))
        return {
            name: "/".join(files[f] for f in REQUIRED_FILES)
            for name, files in sorted(tags.items())
            if all(f in files for f in REQUIRED_FILES)
        }

    def _json(self, name: str, file: str) -> dict[str, Any] | None:
        client = self._client()
        bucket, _ = split_s3(self.uri)
        try:
            body = client.get_object(Bucket=bucket, Key=self._key(name, file))["Body"].read()
        except client.exceptions.ClientError:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None

    def describe(self) -> builtins.list[AdapterInfo]:
        """Every listed adapter with its rank and lineage (``training.json`` when stored)."""
        out = []
        for name in self.list():
            config = self._json(name, REQUIRED_FILES[0]) or {}
            out.append(_info_or_placeholder(name, config, self._json(name, LINEAGE_FILE)))
        return out

    def remove(self, name: str) -> builtins.list[str]:
        """Delete every object of adapter ``name``; return their keys (none: it was not there).

        ``adapter_config.json`` goes first, so the adapter is unlisted before its other files disappear (the reverse
        of :meth:`publish`'s order): nobody lists an adapter whose weights are gone.
        """
        client = self._client()
        bucket, _ = split_s3(self.uri)
        start = self._key(check_name(name), "")
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start)
            for obj in page.get("Contents", [])
        ]
        first = self._key(name, REQUIRED_FILES[0])
        keys.sort(key=lambda key: (key != first, key))
        for key in keys:
            client.delete_object(Bucket=bucket, Key=key)
        return keys

    def download(self, name: str, dest: str | Path) -> Path:
        """Fetch adapter ``name`` into ``dest`` (created); return ``dest``."""
        client = self._client()
        bucket, _ = split_s3(self.uri)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for file in REQUIRED_FILES:
            client.download_file(bucket, self._key(check_name(name), file), str(out / file))
        lineage = self._json(name, LINEAGE_FILE)
        if lineage is not None:
            (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
        return out


def local_adapters_dir() -> Path:
    """The embedded registry's persistent folder: ``<cache dir>/adapters/<name>/``."""
    return cache_dir() / "adapters"


def save_local(local_dir: str | Path, name: str, *, root: Path | None = None, replace: bool = True) -> Path:
    """Copy an adapter (and its ``training.json``) into the embedded registry's folder, atomically.

    Args:
        replace: overwrite an adapter of that name (False: refuse with :class:`AdapterExists`).
    """
    src = check_adapter_dir(local_dir)
    dest = (root or local_adapters_dir()) / check_name(name)
    if not replace and (dest / REQUIRED_FILES[0]).is_file():
        raise AdapterExists(
            f"adapter {name!r} already exists in {dest.parent}: pass --replace to overwrite it"
        )
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in (*REQUIRED_FILES, *OPTIONAL_FILES):
        if (src / file).is_file():
            shutil.copy2(src / file, tmp / file)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def remove_local(name: str, root: Path | None = None) -> Path | None:
    """Delete adapter ``name`` from the embedded registry's folder; return the folder removed (None: not there).

    The folder is first renamed to a hidden name (which :func:`list_local` skips), so the adapter is unlisted at
    once even if deleting its files is interrupted.
    """
    dest = (root or local_adapters_dir()) / check_name(name)
    if not dest.is_dir():
        return None
    gone = dest.with_name(f".{dest.name}.removed")
    shutil.rmtree(gone, ignore_errors=True)
    dest.rename(gone)
    shutil.rmtree(gone)
    return dest


def describe_local(root: Path | None = None) -> list[AdapterInfo]:
    """Every adapter of the embedded registry's folder with its rank and lineage."""
    base = root or local_adapters_dir()
    out = []
    for name in list_local(base):
        config = _load(base / name / REQUIRED_FILES[0]) or {}
        out.append(_info_or_placeholder(name, config, _load(base / name / LINEAGE_FILE)))
    return out


def _load(file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _info_or_placeholder(name: str, config: dict[str, Any], lineage: dict[str, Any] | None) -> AdapterInfo:
    """The adapter's info; one whose config is unreadable is still listed (rank 0), not hidden."""
    try:
        return adapter_info(name, config, lineage)
    except AdapterError:
        return AdapterInfo(name=name, rank=0, base_model=None, lineage=lineage)


def list_local(root: Path | None = None) -> list[str]:
    """Names of the adapters in the embedded registry's folder."""
    base = root or local_adapters_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if _NAME.match(p.name) and (p / REQUIRED_FILES[0]).is_file())


def sync_local(registry: AdapterRegistry, root: Path | None = None) -> list[str]:
    """Upload every adapter of the local folder to ``registry`` (at endpoint start); return their names."""
    base = root or local_adapters_dir()
    names = list_local(base)
    for name in names:
        registry.publish(base / name, name)
    return names


def target_base_model(cfg: ServeConfig) -> str:
    """The base model the endpoint described by ``cfg`` serves: the embedded model's prepared folder, or
    ``model.source``."""
    if cfg.model.source != EMBEDDED:
        return cfg.model.source
    from automem.llm.embedded import prepared_dir

    try:
        return str(prepared_dir())
    except FileNotFoundError:  # the package is missing: its name still identifies the model
        return cfg.model.id


def check_publishable(info: AdapterInfo, cfg: ServeConfig) -> None:
    """Refuse an adapter the endpoint described by ``cfg`` cannot serve: another base model, or (served as LoRA)
    a rank above ``lora.max_rank``.

    Raises:
        AdapterError: naming what differs and the fix.
    """
    target = target_base_model(cfg)
    if not base_matches(info.base_model, target):
        raise AdapterError(
            f"adapter {info.name} was trained on {info.base_model}, but the endpoint serves {cfg.model.id} "
            f"({target}): train it on that model (base_model=...), or publish it to an endpoint serving its base"
        )
    try:
        check_rank_fits(info.rank, cfg)
    except ValueError as exc:
        raise AdapterError(f"adapter {info.name}: {exc}") from None
