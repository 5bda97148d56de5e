"""The running endpoint's state on disk: which process serves, on which URL, with which local S3 server.

``automem serve`` writes it, ``automem serve --status/--stop`` and ``automem chat`` read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automem import env_vars
from automem.llm.embedded import cache_dir


def state_dir() -> Path:
    """``AUTOMEM_STATE_DIR``, else ``<cache dir>/state``."""
    explicit = env_vars.AUTOMEM_STATE_DIR.get()
    return Path(explicit).expanduser() if explicit else cache_dir() / "state"


@dataclass
class EndpointState:
    """What a running ``automem serve`` recorded about itself."""

    pid: int
    """The serving process (``automem serve --foreground``, possibly started in the background)."""
    base_url: str
    """``http://host:port/v1``."""
    model_id: str
    """The base model's id."""
    config: str | None = None
    """The config file it was started from."""
    overrides: list[str] = field(default_factory=list)
    """The ``key=value`` overrides it was started with (on top of :attr:`config`)."""
    phase: str = "starting"
    """``starting``, ``ready`` or ``failed``."""
    message: str = ""
    """The last progress or error message."""
    adapter_registry: str | None = None
    """The adapter registry URI (s3://...), when LoRA is on."""
    s3_endpoint: str | None = None
    """The local S3 server's URL, when the embedded registry is used."""
    s3_pid: int | None = None
    """The local S3 server's process (its own process group)."""
    started_cluster: bool = False
    """Whether the serving process started its own Ray cluster (stopped with it)."""
    ray_address: str | None = None
    """The Ray cluster's GCS address (``ip:port``) the app runs on."""
    ray_auth: str | None = None
    """Ray's auth mode as the serving process saw it: ``token`` or ``disabled``."""
    log: str | None = None
    """The serving process's log file."""
    extra: dict[str, str] = field(default_factory=dict)
    """Anything else worth showing in ``--status``."""


def state_file(root: Path | None = None) -> Path:
    """The JSON file holding the :class:`EndpointState`."""
    return (root or state_dir()) / "endpoint.json"


def write_state(state: EndpointState, root: Path | None = None) -> Path:
    """Write atomically (temp file, then rename), so readers never see half a file."""
    path = state_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)
    return path


def read_state(root: Path | None = None) -> EndpointState | None:
    """The recorded state, or None if there is none (or it is unreadable)."""
    path = state_file(root)
    try:
        return EndpointState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def clear_state(root: Path | None = None) -> None:
    """Forget the recorded endpoint."""
    state_file(root).unlink(missing_ok=True)
