"""Small helpers shared by the pipelines: env ids, scaffold families, the model endpoint."""

from __future__ import annotations


def known_env_ids() -> list[str]:
    """Every registered environment id."""
    from automem.envs import list_envs

    return [e.id if hasattr(e, "id") else str(e) for e in list_envs()]


def env_family(env_id: str) -> str:
    """``crafter``, ``minihack`` or ``nethack`` for an env id (scaffolds are written per family)."""
    for family in ("crafter", "minihack", "nethack"):
        if env_id.startswith(family):
            return family
    return "crafter"


def resolve_endpoint(spec: str) -> tuple[str, str | None]:
    """``automem.serving.endpoint.resolve_endpoint``, with progress lines on stderr and its error as RuntimeError."""
    import sys

    from automem.serving.endpoint import EndpointError
    from automem.serving.endpoint import resolve_endpoint as resolve

    try:
        return resolve(spec, say=lambda m: print(m, file=sys.stderr, flush=True))
    except EndpointError as exc:
        raise RuntimeError(str(exc)) from None
