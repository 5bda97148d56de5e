"""Small helpers shared by the pipelines: env ids, scaffold families, the model endpoint."""

from __future__ import annotations

import httpx

from automem import env_vars


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
    """The base URL to send requests to, and a tokenizer folder for exact budgets when known.

    ``embedded`` means the endpoint `automem serve` runs (started now if it is not running); anything else is a
    URL of an OpenAI-compatible server, checked to answer ``/v1/models``.

    Raises:
        RuntimeError: the endpoint is not reachable, with what to do about it.
    """
    if spec == "embedded":
        from pipelines.serve import ensure_embedded

        return ensure_embedded()
    url = spec.rstrip("/")
    key = env_vars.AUTOMEM_API_KEY.get()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(f"{url}/models", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"endpoint {url} is not reachable ({type(exc).__name__}: {exc})") from None
    if resp.status_code in (401, 403):
        raise RuntimeError(f"endpoint {url} refused the API key (set AUTOMEM_API_KEY)")
    if resp.status_code != 200:
        raise RuntimeError(f"endpoint {url}/models answered {resp.status_code}; is it OpenAI-compatible?")
    return url, None
