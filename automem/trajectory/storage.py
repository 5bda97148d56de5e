"""A storage root: a local folder or ``s3://bucket/prefix``, through ``pyarrow.fs``, with retries.

pyarrow's ``S3FileSystem`` ignores ``AWS_ENDPOINT_URL`` (apache/arrow#49643), so the endpoint of an S3-compatible
server is passed to it explicitly here. Every call is retried with backoff for up to ``retry_for_s`` seconds, so a
bucket that is unreachable for a while delays writes instead of losing them.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from automem import env_vars

log = logging.getLogger(__name__)
T = TypeVar("T")


# Errors that waiting does not fix: fail at once instead of retrying.
_PERMANENT = (
    "NO_SUCH_BUCKET",
    "ACCESS_DENIED",
    "AccessDenied",
    "INVALID_ACCESS_KEY",
    "SIGNATURE_DOES_NOT_MATCH",
)


# Local files being written are hidden under this prefix until renamed into place; pyarrow and Ray Data skip
# names starting with "." when they list a folder, and the store's own readers skip them too.
TMP_PREFIX = ".tmp-"


class StorageError(RuntimeError):
    """The storage root could not be used (after retries, where they apply)."""


class PermanentStorageError(StorageError):
    """An error that waiting does not heal (no space, a read-only or forbidden root, a missing bucket): raised
    at once, without retries, so a run stops in seconds with the cause instead of retrying for minutes."""


# errno values of local writes that retrying does not fix.
_PERMANENT_ERRNO = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for the file system",
}


def permanent_cause(exc: BaseException) -> str | None:
    """Why ``exc`` will not heal by waiting (a phrase for the message), or None if it may be transient."""
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNO:
        return _PERMANENT_ERRNO[exc.errno]
    text = str(exc)
    for code, why in _PERMANENT_ERRNO.items():  # pyarrow sometimes reports errno only in the text
        if f"[errno {code}]" in text.lower():
            return why
    if any(m in text for m in _PERMANENT):
        return "the bucket refused the request"
    return None


def aws_credentials() -> dict[str, str]:
    """The S3 credentials boto3 resolves here (env, config files, ...), as environment variables for others."""
    import boto3

    creds = boto3.Session().get_credentials()
    if creds is None:
        return {}
    frozen = creds.get_frozen_credentials()
    out = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    return out


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of one Parquet file (zstd), as the store writes them."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint: str | None, region: str) -> Any:
    """A boto3 S3 client for the endpoint ``s3_filesystem`` uses (thread-safe; one per endpoint)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region, config=config)


# Answers to a conditional PUT that a retry may change: a conflicting conditional write in flight (409), a
# throttle or timeout, a server error.
_S3_TRANSIENT = {408, 409, 429, 500, 502, 503, 504}


def _s3_create(path: str, data: bytes) -> bool:
    """``Storage.create_exclusive`` on S3: ``path`` is ``bucket/key``."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = path.partition("/")
    client = _s3_client(env_vars.AWS_ENDPOINT_URL.get(), env_vars.AWS_DEFAULT_REGION.get())
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        return True
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "")
        if status == 412 or code == "PreconditionFailed":
            return False
        if status in _S3_TRANSIENT:
            raise ConnectionError(f"conditional PUT: {code} ({status})") from exc  # retried
        raise StorageError(f"create s3://{path} failed: {code} ({status}): {exc}") from exc
    except BotoCoreError as exc:  # no connection, a timeout: retried like pyarrow's errors
        raise ConnectionError(f"conditional PUT: {exc}") from exc


def s3_filesystem(endpoint: str | None = None, **kw) -> pafs.S3FileSystem:
    """An S3 filesystem for ``AWS_ENDPOINT_URL`` (or ``endpoint``), e.g. moto's server on loopback."""
    endpoint = endpoint or env_vars.AWS_ENDPOINT_URL.get()
    opts: dict = {"region": env_vars.AWS_DEFAULT_REGION.get(), **kw}
    # Resolve credentials here and pass them explicitly: the filesystem is pickled into Ray tasks (Ray Data),
    # whose processes may not have this one's environment.
    creds = aws_credentials()
    if creds:
        opts.update(access_key=creds["AWS_ACCESS_KEY_ID"], secret_key=creds["AWS_SECRET_ACCESS_KEY"])
        if "AWS_SESSION_TOKEN" in creds:
            opts["session_token"] = creds["AWS_SESSION_TOKEN"]
    if endpoint:
        parsed = urlparse(endpoint)
        opts["endpoint_override"] = parsed.netloc or parsed.path
        opts["scheme"] = parsed.scheme or "http"
    return pafs.S3FileSystem(**opts)


class Storage:
    """Files under one root, local or on S3.

    Args:
        root: a local path, ``file://...`` or ``s3://bucket/prefix``.
        retry_for_s: how long to keep retrying a failing call before giving up.
    """

    def __init__(self, root: str, *, retry_for_s: float = 300.0, fs: pafs.FileSystem | None = None) -> None:
        self.uri = root
        self.retry_for_s = retry_for_s
        if root.startswith("s3://"):
            self.fs = fs or s3_filesystem(connect_timeout=5, request_timeout=20)
            self.base = root[len("s3://") :].rstrip("/")
            self.is_s3 = True
        else:
            path = root[len("file://") :] if root.startswith("file://") else root
            self.fs = fs or pafs.LocalFileSystem()
            self.base = os.path.abspath(path)
            self.is_s3 = False

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Call ``fn``, retrying errors with exponential backoff for up to ``retry_for_s`` seconds."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            try:
                return fn()
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowException) as exc:
                why = permanent_cause(exc)
                if why is not None:
                    raise PermanentStorageError(f"{what} on {self.uri} failed ({why}): {exc}") from exc
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"{what} on {self.uri} failed for {self.retry_for_s:.0f} s: {exc}"
                    ) from exc
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    def ensure_dir(self, path: str) -> None:
        if not self.is_s3:
            self.retry("mkdir", lambda: self.fs.create_dir(path, recursive=True))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically: readers see the old file or the new one, never a part of it.

        On S3 a PUT is atomic by itself; locally the bytes go to a hidden temporary file beside the target that
        is then renamed over it (a SIGKILL mid-write leaves only the temporary file, which ``repair`` removes).
        """
        self.retry(f"write {path}", lambda: self._atomic_write(path, lambda f: f.write(data)))

    def _atomic_write(self, path: str, fill: Callable[[pa.NativeFile], object]) -> None:
        if self.is_s3:
            # An object (single PUT or multipart upload) becomes visible only once it is complete.
            with self.fs.open_output_stream(path) as f:
                fill(f)
            return
        parent, name = path.rsplit("/", 1)
        self.ensure_dir(parent)
        tmp = f"{parent}/{TMP_PREFIX}{name}.{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open_output_stream(tmp) as f:
                fill(f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def read_bytes(self, path: str) -> bytes:
        def go() -> bytes:
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return self.retry(f"read {path}", go)

    def write_table(self, path: str, table: pa.Table) -> None:
        """Write ``table`` as one Parquet file, atomically (see ``write_bytes``)."""
        self.write_bytes(path, parquet_bytes(table))

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create the file ``path`` holding ``data``, whole, unless it exists: True if this call created it, False
        if it was there (another writer's). The store's one atomic primitive: lease generations, attempt claims
        and commit records are created with it, so of several writers racing for one name exactly one wins.

        Locally the bytes go to a hidden temporary file that is hard-linked to ``path`` (``link`` fails when the
        target exists, and the file appears with all its content). On S3 a PUT with ``If-None-Match: *`` (a
        conditional write: 412 when the key exists), through boto3, since pyarrow cannot send the header.

        A retried create whose first answer was lost finds its own file: it counts as created when the file
        holds exactly ``data``, so ``data`` must be unique to the caller (an owner token, a timestamp).
        """
        if self.retry(f"create {path}", lambda: self._create(path, data)):
            return True
        try:
            return self.read_bytes(path) == data
        except FileNotFoundError:  # deleted since (a dropped claim): it was not ours either
            return False

    def _create(self, path: str, data: bytes) -> bool:
        if self.is_s3:
            return _s3_create(path, data)
        parent, name = path.rsplit("/", 1)
        os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/{TMP_PREFIX}{name}.{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def parquet_metadata(self, path: str) -> pq.FileMetaData:
        """The footer of the Parquet file ``path`` (row counts and column statistics; no data is read)."""

        def go() -> pq.FileMetaData:
            with self.fs.open_input_file(path) as f:
                return pq.read_metadata(f)

        return self.retry(f"read {path}", go)

    def exists(self, path: str) -> bool:
        info = self.retry("stat", lambda: self.fs.get_file_info(path))
        return info.type != pafs.FileType.NotFound

    def list_files(self, path: str, *, hidden: bool = False) -> list[str]:
        """Every file below ``path`` (recursively); empty if it does not exist.

        Args:
            hidden: include local temporary files (``.tmp-*``) of writes still under way or cut by a crash.
        """

        def go() -> list[str]:
            sel = pafs.FileSelector(path, recursive=True, allow_not_found=True)
            return sorted(
                i.path
                for i in self.fs.get_file_info(sel)
                if i.type == pafs.FileType.File and (hidden or not i.base_name.startswith(TMP_PREFIX))
            )

        return self.retry(f"list {path}", go)

    def publish(self, src: str, dst: str) -> None:
        """Make the file ``src`` appear, whole, at ``dst`` (replacing it); safe to call again after a failure.

        Locally a rename (atomic). On S3 a server-side copy (atomic, and idempotent where a copy-then-delete
        move is not: a retried move whose delete went through but whose answer was lost finds no source);
        ``src`` stays until its folder is deleted.
        """

        def go() -> None:
            if self.is_s3:
                self.fs.copy_file(src, dst)
                return
            self.ensure_dir(dst.rsplit("/", 1)[0])
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                if not os.path.exists(dst):  # not an earlier try of this same rename
                    raise

        self.retry(f"publish {src}", go)

    def concat_parquet(
        self,
        dst: str,
        schema: pa.Schema,
        parts: list[str],
        *,
        tail: pa.Table | None = None,
        check: Callable[[pa.Table], object] | None = None,
    ) -> None:
        """Write the rows of the Parquet files ``parts`` (then ``tail``) as one file at ``dst``, atomically, one
        part in memory at a time (an episode's parts become one file). ``check`` sees each part as it is read
        and may raise to stop."""

        def fill(f: pa.NativeFile) -> None:
            with pq.ParquetWriter(f, schema, compression="zstd") as w:
                for part in parts:
                    rows = pq.read_table(part, filesystem=self.fs, schema=schema)
                    if check is not None:
                        check(rows)
                    w.write_table(rows)
                if tail is not None and tail.num_rows:
                    w.write_table(tail)

        self.retry(f"write {dst}", lambda: self._atomic_write(dst, fill))

    def delete_file(self, path: str) -> None:
        def go() -> None:
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:
                pass

        self.retry(f"delete {path}", go)

    def delete_dir(self, path: str) -> None:
        def go() -> None:
            if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
                self.fs.delete_dir(path)

        self.retry(f"delete {path}", go)

    def check(self) -> None:
        """Fail fast, with a clear error, if the root cannot be written (e.g. no such bucket), or if an S3 server
        ignores conditional writes (``create_exclusive`` would then not be exclusive: no lease, no commit point)."""
        probe = self.path("_staging", ".probe")
        old = self.retry_for_s
        self.retry_for_s = min(self.retry_for_s, 10.0)
        try:
            self.write_bytes(probe, b"ok")
            exclusive = not self.is_s3 or not self.create_exclusive(probe, uuid.uuid4().bytes)
            self.delete_file(probe)
        except StorageError as exc:
            raise StorageError(f"cannot write to {self.uri}: {exc.__cause__ or exc}") from None
        finally:
            self.retry_for_s = old
        if not exclusive:
            raise StorageError(
                f"{self.uri}: the S3 server ignores conditional writes (PUT with If-None-Match: *), which the "
                "run lease and the commit protocol need; use one that supports them (AWS S3, MinIO, moto)"
            )
