"""Every environment variable automem reads, declared once with what it does.

Read them through these helpers, never with ``os.environ`` elsewhere, so that this file stays the complete list
(a test greps the tree for stray reads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: its name, default and meaning."""

    name: str
    default: str | None
    doc: str

    def get(self) -> str | None:
        """The value, or the default when unset or empty."""
        value = os.environ.get(self.name)
        return value if value else self.default


AUTOMEM_API_KEY = EnvVar(
    "AUTOMEM_API_KEY",
    None,
    "Bearer token. When set, the serving endpoint rejects requests without it (401) and clients send it.",
)
AUTOMEM_ENDPOINT = EnvVar(
    "AUTOMEM_ENDPOINT",
    None,
    "Base URL of an OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) used when none is given.",
)
AUTOMEM_CACHE_DIR = EnvVar(
    "AUTOMEM_CACHE_DIR",
    None,
    "Where prepared models and other caches live. Default: $XDG_CACHE_HOME/automem or ~/.cache/automem.",
)
AUTOMEM_STATE_DIR = EnvVar(
    "AUTOMEM_STATE_DIR",
    None,
    "Where the running endpoint's state (pid files, ports, logs) is kept. Default: <cache dir>/state.",
)
AWS_ENDPOINT_URL = EnvVar(
    "AWS_ENDPOINT_URL",
    None,
    "Endpoint of an S3-compatible server for s3:// roots. pyarrow ignores it (apache/arrow#49643), so automem "
    "passes it explicitly.",
)
AWS_ACCESS_KEY_ID = EnvVar(
    "AWS_ACCESS_KEY_ID", None, "S3 credentials; forwarded to Ray jobs and runner actors."
)
AWS_SECRET_ACCESS_KEY = EnvVar("AWS_SECRET_ACCESS_KEY", None, "S3 credentials; forwarded with the key id.")
AWS_DEFAULT_REGION = EnvVar("AWS_DEFAULT_REGION", "us-east-1", "Region for S3 clients.")
XDG_CACHE_HOME = EnvVar("XDG_CACHE_HOME", None, "Base of the per-user cache directory (XDG convention).")
RAY_ADDRESS = EnvVar(
    "RAY_ADDRESS", None, "Address of a running Ray cluster to connect to instead of starting one."
)
RAY_AUTH_MODE = EnvVar(
    "RAY_AUTH_MODE",
    "disabled",
    "Ray's auth mode (token or disabled). Unset, Ray 2.60 starts local clusters with token auth "
    "(ray-project/ray#64755; the token in ~/.ray/auth_token), which is what `automem serve`/`rollout` keep; "
    "`make`, CI and the tests set `disabled`, and `automem submit` sends `disabled` (ray_cluster.yaml's mode) "
    "unless this is set.",
)
OPENAI_API_KEY = EnvVar(
    "OPENAI_API_KEY",
    None,
    "Key `automem evolve --reviewer openai:MODEL@URL` sends to a reviewer endpoint that is not automem's own "
    "(automem's endpoint gets AUTOMEM_API_KEY).",
)
ANTHROPIC_API_KEY = EnvVar(
    "ANTHROPIC_API_KEY",
    None,
    "Key of `automem evolve --reviewer anthropic:MODEL` (the optional `anthropic` extra).",
)
TUNE_DISABLE_AUTO_CALLBACK_LOGGERS = EnvVar(
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
    "1",
    "Ray Tune's default per-trial loggers (CSV, JSON, TensorBoard, which warns without tensorboardX); "
    "`automem distill search` sets 1 and adds the JSON logger itself.",
)

ALL: tuple[EnvVar, ...] = tuple(v for v in globals().values() if isinstance(v, EnvVar))


def forwarded(*variables: EnvVar) -> dict[str, str]:
    """``{name: value}`` of those variables that are set, to hand to another process (a Ray job, an actor)."""
    return {v.name: value for v in variables if (value := os.environ.get(v.name))}


def export_default(var: EnvVar) -> None:
    """Set ``var`` to its default in this process's environment unless it is set (for child processes)."""
    if var.default is not None:
        os.environ.setdefault(var.name, var.default)
