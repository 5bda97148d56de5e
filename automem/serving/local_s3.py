"""A local S3-compatible server (moto's) on 127.0.0.1, for the embedded adapter registry.

Ray Serve LLM loads LoRA adapters from cloud URIs only (a validator in Ray 2.60 rejects local paths; docs/LOG.md,
"platform facts"), so the embedded endpoint runs moto's S3 server beside it, as a child process in its own process
group, and stops it with the endpoint. Its contents live in memory; :mod:`automem.serving.adapters` refills it from
a local folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "automem-local",
    "AWS_SECRET_ACCESS_KEY": "automem-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Credentials the local server accepts (moto accepts any); boto3 still insists on having some."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class LocalS3:
    """A running moto S3 server: its process and URL."""

    pid: int
    url: str

    @property
    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point S3 clients (boto3, pyarrow via Ray) at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_S3": self.url, **CREDENTIALS}

    def alive(self) -> bool:
        """Whether the process still runs."""
        return pid_alive(self.pid)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server's process group and wait for it."""
        stop_process_group(self.pid, timeout_s)


def start_local_s3(
    log_path: Path | None = None, *, port: int | None = None, timeout_s: float = 30.0
) -> LocalS3:
    """Start ``moto.server`` on 127.0.0.1 and wait until it answers.

    Raises:
        RuntimeError: it exited or did not answer within ``timeout_s`` (the log path is named).
    """
    port = port or free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so stop() reaches any children and Ctrl-C in a shell does not
    )
    if log_path:
        log.close()  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local S3 server exited with status {proc.returncode} (log: {log_path})")
        try:
            httpx.get(url, timeout=1.0)
            return LocalS3(pid=proc.pid, url=url)
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_process_group(proc.pid, 5.0)
    raise RuntimeError(
        f"the local S3 server did not answer on {url} within {timeout_s:.0f} s (log: {log_path})"
    )


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (and is not a zombie we could reap)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it if it outlives ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
