"""Connecting to Ray the same way from every pipeline: an address, a running local cluster, or a new one.

Security: Ray's GCS, raylet and dashboard agent listen on every interface, and whoever reaches them can run code on
the cluster and call any Serve deployment directly, past automem's HTTP API key. Ray 2.60 offers no way to bind
them to loopback: ``--node-ip-address 127.0.0.1`` / ``_node_ip_address`` are resolved to the routable address, and
its gRPC servers listen on ``*`` regardless (checked with ``ss -ltnp``). So a local cluster started here uses Ray
token auth (``RAY_AUTH_MODE=token``; Ray keeps the token in ``~/.ray/auth_token`` unless ``RAY_AUTH_TOKEN`` is set)
unless ``RAY_AUTH_MODE`` is set explicitly, e.g. ``disabled`` by the tests and ``make``. On real clusters start every
node with ``RAY_AUTH_MODE=token`` and firewall Ray's ports.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from automem import env_vars

LOCAL = "local"
"""``ray.address`` value meaning: always start a new local cluster, never attach to a running one."""


@dataclass(frozen=True)
class RayConnection:
    """How this process is connected to Ray."""

    how: str
    """A line for the log: ``started a local cluster (8 logical CPUs, token auth)`` etc."""
    started: bool
    """Whether this process started the cluster (and so shuts it down)."""
    address: str | None
    """The cluster's GCS address (``ip:port``)."""
    auth_mode: str
    """``token`` or ``disabled``, as this process sees it."""


def _auth_mode() -> str:
    # Ray records a mode it turns on in this process's environment (for its child processes); unset is disabled.
    return (env_vars.RAY_AUTH_MODE.get() or "disabled").lower()


def _connected(how: str, started: bool = False) -> RayConnection:
    return RayConnection(how, started, gcs_address(), _auth_mode())


def connect_ray(
    address: str | None = None, *, num_cpus: int = 8, env: dict[str, str] | None = None
) -> RayConnection:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else to a local cluster that is running, else start one.

    ``address="local"`` always starts a new local cluster. A new local cluster gets ``num_cpus`` logical CPUs: on a
    2-core machine Serve's replicas and the runners would otherwise not all be schedulable (docs/LOG.md, "platform facts": the
    ingress never started with ``num_cpus=2``), and token auth unless ``RAY_AUTH_MODE`` is set (module docstring).
    Attaching to a running local cluster uses its token when one is available (Ray's own rule); an explicit
    address with token auth needs ``RAY_AUTH_MODE=token``.
    """
    if ray.is_initialized():
        return _connected("already connected")
    runtime_env = {"env_vars": env} if env else None
    address = address or env_vars.RAY_ADDRESS.get()
    if address and address != LOCAL:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return _connected(f"connected to {address}")
    if address != LOCAL:
        try:
            # With RAY_AUTH_MODE unset, Ray enables token auth here if a token is available.
            ray.init(address="auto", runtime_env=runtime_env, log_to_driver=False)
            return _connected("connected to the local cluster")
        except (ConnectionError, RuntimeError):
            pass
    # With RAY_AUTH_MODE unset, Ray 2.60 starts a new local cluster with token auth (and records the mode in this
    # process's environment); setting the variable here instead would come too late for Ray's cached config.
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
    auth = "token auth" if _auth_mode() == "token" else "NO auth"
    return _connected(f"started a local cluster ({num_cpus} logical CPUs, {auth})", started=True)


def gcs_address() -> str | None:
    """The GCS address (``ip:port``) of the cluster this process is connected to, or None (for messages)."""
    if not ray.is_initialized():
        return None  # asking the runtime context would start a local cluster
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - informational only
        return None


def metrics_url() -> str:
    """The Prometheus page of this node's Ray metrics agent, where Serve LLM's engine metrics land (this process
    must be connected to a local cluster)."""
    node = ray._private.worker._global_node  # no public accessor for the export port of a local node
    if node is None:
        raise RuntimeError("not connected to a local Ray cluster: no metrics agent to read")
    return f"http://127.0.0.1:{node.metrics_export_port}/metrics"


def placeable(resources: dict[str, float]) -> bool:
    """Whether some alive node of the connected cluster has ``resources`` in total (free or not): False means
    nothing can run there until a node that has them joins."""
    for node in ray.nodes():
        if node.get("Alive") and all(
            node.get("Resources", {}).get(k, 0.0) >= v for k, v in resources.items()
        ):
            return True
    return False
