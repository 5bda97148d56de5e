"""The Serve application builder: the app ``automem serve`` deploys, for ``serve run`` and Serve config files.

A KubeRay RayService (``automem deploy render --target kuberay``) names ``import_path:
actors.serve_builder:app_builder`` with ``args: {config: <serve config>}``; ``serve run
actors.serve_builder:app_builder config=deploy/serve-gpu.yaml`` does the same from a shell. Both build the app with
``actors.serve_app.endpoint_app``, the one way the app is built, so the API-key check, ingress autoscaling and
LoRA settings are those of ``automem serve``.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from actors.serve_app import endpoint_app, required_api_key
from automem.serving import adapters
from automem.serving.config import ServeConfig, cluster_problem, load_config, parse_config
from automem.serving.options import cpu_choice


def builder_config(args: dict[str, Any]) -> ServeConfig:
    """The serve config in an application builder's ``args``: ``{"config": <mapping>}`` as ``automem deploy
    render`` writes it (``automem/deploy/kuberay.py``), or ``{"config": "<path of a serve config YAML>"}`` as
    ``serve run actors.serve_builder:app_builder config=deploy/serve-gpu.yaml`` passes it.

    A builder runs in a Ray task on any node of the cluster, with no process of its own that outlives it, so what
    ``automem serve`` keeps beside the app is refused: the embedded model (prepared on one machine), the embedded
    adapter registry (a local S3 server) and merged copies (a thread that merges and redeploys).

    Raises:
        ValueError: the args or the config are invalid; the message names the field (a :class:`ConfigError`
            for a field of the config).
    """
    if not isinstance(args, dict):
        raise ValueError(f"app_builder args must be a mapping {{config: ...}}, not {type(args).__name__}")
    unknown = sorted(set(args) - {"config"})
    if unknown:
        raise ValueError(
            f"app_builder args: unknown key(s) {', '.join(map(str, unknown))}; only config is read"
        )
    data = args.get("config")
    if isinstance(data, str):
        cfg = load_config(data)
    elif isinstance(data, dict):
        cfg = parse_config(data, source="app_builder args.config")
    else:
        got = "missing" if data is None else f"a {type(data).__name__}"
        raise ValueError(
            f"app_builder args.config is {got}: give the serve config (automem/serving/config.py) as a mapping "
            "or as the path of a YAML file"
        )
    problem = cluster_problem(cfg)
    if problem:
        raise ValueError(f"app_builder args.config: {problem}")
    return cfg


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Ray Serve application builder: the app ``automem serve`` deploys, for ``serve run`` and Serve config files
    (a KubeRay RayService's ``import_path: actors.serve_builder:app_builder``).

    The config is :func:`builder_config`'s; the API key is ``AUTOMEM_API_KEY`` of the process that builds the app
    (only its salted digest goes into the app). Nothing is deployed or waited for here: Serve does that.

    Raises:
        ValueError: bad args, naming the field (:func:`builder_config`).
        RuntimeError: ``server.require_api_key`` is set and ``AUTOMEM_API_KEY`` is not.
    """
    cfg = builder_config(args)
    api_key = required_api_key(cfg)
    registry = adapters.AdapterRegistry(cfg.lora.registry) if cfg.lora.enabled else None
    app, _ = endpoint_app(cfg, cfg.model.source, api_key=api_key, cpu=cpu_choice(cfg), registry=registry)
    return app
