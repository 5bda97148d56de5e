"""Connecting to Ray the same way from every pipeline: an address, a running local cluster, or a new one."""

from __future__ import annotations

import ray

from automem import env_vars


def init_ray(address: str | None = None, *, num_cpus: int = 8, env: dict[str, str] | None = None) -> str:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else to a local cluster that is running, else start one.

    A new local cluster gets ``num_cpus`` logical CPUs: on a 2-core machine Serve's replicas and the runners would
    otherwise not all be schedulable (see docs/FACTS: the ingress never started with ``num_cpus=2``).

    Returns:
        how it connected, for the log line.
    """
    if ray.is_initialized():
        return "already connected"
    # Ray 2.60 turns token auth on for local clusters unless told otherwise; automem chooses explicitly.
    env_vars.export_default(env_vars.RAY_AUTH_MODE)
    runtime_env = {"env_vars": env} if env else None
    address = address or env_vars.RAY_ADDRESS.get()
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return f"connected to {address}"
    try:
        ray.init(address="auto", runtime_env=runtime_env, log_to_driver=False)
        return "connected to the local cluster"
    except (ConnectionError, RuntimeError):
        pass
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
    return f"started a local cluster ({num_cpus} logical CPUs)"
