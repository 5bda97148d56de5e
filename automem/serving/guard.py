"""Whether deploying the endpoint would disturb another one already on the same Ray cluster.

``automem serve`` attaches to a running local cluster when there is one, and Ray Serve has one HTTP proxy per
cluster: ``serve.run`` under a name that exists replaces that app, and ``serve.start(http_options=...)`` is ignored
(with a warning only) when Serve already listens elsewhere. :func:`serve_conflict` says why not to deploy, from a
plain summary of the running Serve instance (built by ``actors/serve_app.py``; no Ray here).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeApp:
    """One application on the running Serve instance."""

    status: str
    """``RUNNING``, ``DEPLOYING``, ``DELETING``, ..."""
    route_prefix: str | None
    """Its HTTP route prefix (None: not routed over HTTP)."""


@dataclass(frozen=True)
class ServeInstance:
    """What is running: Serve's HTTP host and port, and its applications by name."""

    host: str | None
    port: int | None
    apps: dict[str, ServeApp] = field(default_factory=dict)


def serve_conflict(
    running: ServeInstance | None,
    *,
    app_name: str,
    host: str,
    port: int,
    route_prefix: str = "/",
    where: str = "this Ray cluster",
) -> str | None:
    """Why deploying ``app_name`` at ``http://host:port{route_prefix}`` would disturb what runs, or None if not.

    Args:
        running: the running Serve instance, None if Serve is not started on the cluster.
        app_name: the application name about to be deployed.
        host: the HTTP host the config asks for.
        port: the HTTP port the config asks for.
        route_prefix: the route the app is deployed at.
        where: how to name the cluster in the message.
    """
    if running is None:
        return None
    hint = (
        "Stop it where it was started (`automem serve --stop` with that AUTOMEM_STATE_DIR), or serve on a "
        "cluster of its own: `--set ray.address=local`."
    )
    if running.port is not None and (running.port != port or (running.host or host) != host):
        return (
            f"Ray Serve on {where} already listens on {running.host}:{running.port}; it would ignore "
            f"server.host/port={host}:{port}. Use `--set server.port={running.port}` to share it, or "
            "`--set ray.address=local` for a cluster of its own."
        )
    app = running.apps.get(app_name)
    if app is not None:
        return (
            f"Ray Serve on {where} already runs an application named {app_name!r} ({app.status}, route "
            f"{app.route_prefix}) that this `automem serve` did not start; it is left alone. {hint}"
        )
    for name, other in sorted(running.apps.items()):
        if other.route_prefix == route_prefix:
            return (
                f"Ray Serve on {where} already routes {route_prefix} to application {name!r} ({other.status}); "
                f"deploying here would take its route. {hint}"
            )
    return None
