# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_serve_app_builder.py   (~1-2 min: imports vLLM)
"""The RayService's Serve application, built the way Serve builds it from a config file (``import_path`` + ``args``
in a Ray task), is the app ``automem serve`` deploys for deploy/serve-gpu.yaml: the same engine config, LoRA
settings, ingress autoscaling and API-key check. No GPU and nothing deployed: building needs only a Ray cluster
(Serve LLM reads the runtime context). The args themselves: tests/unit/test_serve_app_builder.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEY = "builder-test-key-" + "q" * 24


def _fastapi_app(ingress):
    """The FastAPI app ``serve.ingress`` froze into the ingress class (kept in its ``__init__``'s closure; Serve
    has no accessor for it)."""
    from fastapi import FastAPI

    cells = ingress.func_or_class.__init__.__closure__ or ()
    (app,) = [c.cell_contents for c in cells if isinstance(c.cell_contents, FastAPI)]
    return app


@pytest.fixture(scope="module")
def built(ray_cluster):
    """(the app Serve builds from the rendered RayService, the app ``automem serve`` builds from serve-gpu.yaml)."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.utils import import_attr

    from actors.serve_app import endpoint_app
    from automem.serving import adapters
    from automem.serving.config import load_config

    mp = pytest.MonkeyPatch()
    mp.setenv("AUTOMEM_API_KEY", KEY)
    try:
        service = yaml.safe_load((ROOT / "deploy/kuberay/rayservice.yaml").read_text())
        (spec,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
        # What Serve's build task runs (serve/_private/application_state.py, build_serve_application).
        app = call_user_app_builder_with_args_if_necessary(import_attr(spec["import_path"]), spec["args"])
        cfg = load_config(ROOT / "deploy/serve-gpu.yaml")
        registry = adapters.AdapterRegistry(cfg.lora.registry)
        reference, merged = endpoint_app(cfg, cfg.model.source, api_key=KEY, registry=registry)
    finally:
        mp.undo()
    assert merged is None
    return app, reference


def test_the_builder_returns_a_serve_application_that_serve_can_build(built):
    from ray.serve import Application
    from ray.serve._private.build_app import build_app

    app, _ = built
    assert isinstance(app, Application)
    deployments = build_app(app, name="automem-llm", default_runtime_env={}).deployments
    assert sorted(d.name for d in deployments) == ["AdapterIngress", "LLMServer:qwen2_5-7b"]


def test_the_engine_and_lora_settings_are_those_of_serve_gpu_yaml(built):
    from automem.serving.config import load_config

    cfg = load_config(ROOT / "deploy/serve-gpu.yaml")
    app, reference = built
    ingress, ref_ingress = app._bound_deployment, reference._bound_deployment  # no public accessor
    (server,) = ingress.init_kwargs["llm_deployments"].values()
    (ref_server,) = ref_ingress.init_kwargs["llm_deployments"].values()
    config = server._bound_deployment.init_kwargs["llm_config"]
    assert config.model_dump() == ref_server._bound_deployment.init_kwargs["llm_config"].model_dump()
    # The version is a digest of the LLMConfig (actors/serve_app.py, _pin_version).
    assert server._bound_deployment.version == ref_server._bound_deployment.version
    assert config.model_id == cfg.model.id and config.accelerator_type == cfg.accelerator_type
    assert config.engine_kwargs["tensor_parallel_size"] == cfg.engine.tensor_parallel_size
    assert config.engine_kwargs["enable_lora"] and config.engine_kwargs["max_lora_rank"] == cfg.lora.max_rank
    assert config.lora_config.dynamic_lora_loading_path == cfg.lora.registry
    assert config.lora_config.max_num_adapters_per_replica == cfg.lora.max_adapters_per_replica
    auto = config.deployment_config["autoscaling_config"]
    assert auto["target_ongoing_requests"] == cfg.deployment.autoscaling.target_ongoing_requests
    assert ingress.init_kwargs["lora_paths"] == {cfg.model.id: cfg.lora.registry}


def test_the_ingress_autoscales_and_checks_the_api_key(built):
    from ray import cloudpickle

    from automem.serving.auth import ApiKeyMiddleware
    from automem.serving.config import load_config

    want = load_config(ROOT / "deploy/serve-gpu.yaml").deployment.ingress
    app, reference = built
    ingress, ref_ingress = app._bound_deployment, reference._bound_deployment
    auto = ingress._deployment_config.autoscaling_config
    assert auto == ref_ingress._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (
        want.autoscaling.min_replicas,
        want.autoscaling.max_replicas,
        want.autoscaling.target_ongoing_requests,
    )
    assert ingress.ray_actor_options["num_cpus"] == want.num_cpus
    (guard,) = [m for m in _fastapi_app(ingress).user_middleware if m.cls is ApiKeyMiddleware]
    assert guard.kwargs["key"].matches(KEY) and not guard.kwargs["key"].matches(KEY + "x")
    # Serve keeps the app pickled in the cluster: only a salted digest of the key is in it.
    assert KEY.encode() not in cloudpickle.dumps(app)
