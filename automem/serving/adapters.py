"""The adapter registry: where LoRA adapters live so that the endpoint serves them by name.

An adapter ``<name>`` is a folder ``<registry uri>/<name>/`` holding ``adapter_config.json`` and
``adapter_model.safetensors`` (what PEFT's ``save_pretrained`` writes). Ray Serve LLM loads adapters from a cloud URI
only, so the registry is an ``s3://bucket/prefix``; the embedded default is a local S3-compatible server
(``automem.serving.local_s3``) filled from a local folder (:func:`local_adapters_dir`) each time it starts, so that
adapters survive a restart of the endpoint. Clients request ``<base model id>:<name>``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automem import env_vars
from automem.llm.embedded import cache_dir

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
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

    def publish(self, local_dir: str | Path, name: str) -> str:
        """Upload a PEFT adapter folder as ``name``; the weights go last, so a listed adapter is complete.

        Returns:
            The model name clients use is ``<base id>:<name>``; this returns the adapter's URI.
        """
        path = check_adapter_dir(local_dir)
        check_name(name)
        client = self._client()
        bucket, _ = split_s3(self.uri)
        # The ingress lists an adapter once adapter_config.json exists, so upload the weights first.
        for file in reversed(REQUIRED_FILES):
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

    def download(self, name: str, dest: str | Path) -> Path:
        """Fetch adapter ``name`` into ``dest`` (created); return ``dest``."""
        client = self._client()
        bucket, _ = split_s3(self.uri)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for file in REQUIRED_FILES:
            client.download_file(bucket, self._key(check_name(name), file), str(out / file))
        return out


def local_adapters_dir() -> Path:
    """The embedded registry's persistent folder: ``<cache dir>/adapters/<name>/``."""
    return cache_dir() / "adapters"


def save_local(local_dir: str | Path, name: str, *, root: Path | None = None) -> Path:
    """Copy an adapter into the embedded registry's folder (served from the next endpoint start on)."""
    src = check_adapter_dir(local_dir)
    dest = (root or local_adapters_dir()) / check_name(name)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in REQUIRED_FILES:
        shutil.copy2(src / file, tmp / file)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


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
