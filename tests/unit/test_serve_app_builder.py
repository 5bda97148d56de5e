# Run: .venv/bin/python -m pytest tests/unit/test_serve_app_builder.py
"""The Serve application builder's args, without Ray: what `automem deploy render --target kuberay` writes into the
RayService (``import_path`` + ``args``) is what ``actors.serve_builder:app_builder`` reads, parsed by the strict serve
config; bad args fail before anything is built, naming the field. Building the app itself needs a Ray cluster
(Serve LLM reads the runtime context): tests/integration/test_serve_app_builder.py."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from automem.serving.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def rendered_app() -> dict:
    service = yaml.safe_load((ROOT / "deploy/kuberay/rayservice.yaml").read_text())
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    return app


def builder(import_path: str):
    module, attr = import_path.split(":")
    return getattr(importlib.import_module(module), attr)


def test_the_rendered_import_path_is_a_serve_app_builder_of_the_rendered_args():
    from actors.serve_builder import app_builder, builder_config

    app = rendered_app()
    fn = builder(app["import_path"])
    assert fn is app_builder
    # Ray Serve's convention: a plain function of one parameter, the args mapping.
    assert inspect.isfunction(fn) and len(inspect.signature(fn).parameters) == 1
    assert set(app["args"]) == {"config"}
    gpu = load_config(ROOT / "deploy/serve-gpu.yaml")
    assert builder_config(app["args"]) == gpu == parse_config(app["args"]["config"])


def test_config_may_be_the_path_of_a_yaml_file_as_serve_run_passes_it():
    from actors.serve_builder import builder_config

    path = str(ROOT / "deploy/serve-gpu.yaml")
    assert builder_config({"config": path}) == load_config(path)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({}, "config"),
        ({"config": None}, "config"),
        ({"config": 3}, "config"),
        ({"config": {}, "extra": 1}, "extra"),
        (["config"], "mapping"),
    ],
)
def test_bad_args_are_a_value_error_naming_them(args, named):
    from actors.serve_builder import app_builder

    with pytest.raises(ValueError, match=named):
        app_builder(args)


def test_a_field_that_fails_validation_is_named():
    from actors.serve_builder import app_builder

    config = rendered_app()["args"]["config"]
    typo = yaml.safe_load(yaml.safe_dump(config))
    typo["deployment"]["autoscaling"]["min_replica"] = 1  # Serve itself would drop this silently
    with pytest.raises(ConfigError, match=r"deployment\.autoscaling\.min_replica"):
        app_builder({"config": typo})
    bad = yaml.safe_load(yaml.safe_dump(config))
    bad["engine"]["max_model_len"] = "long"
    with pytest.raises(ValueError, match=r"engine\.max_model_len"):
        app_builder({"config": bad})


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"model": {"source": "embedded"}}, "model.source"),
        ({"lora": {"registry": "embedded"}}, "lora.registry"),
        ({"lora": {"serve_as": "merged"}}, "lora.serve_as"),
    ],
)
def test_what_only_automem_serve_can_run_beside_the_app_is_refused(override, named):
    from actors.serve_builder import app_builder

    config = yaml.safe_load(yaml.safe_dump(rendered_app()["args"]["config"]))
    for section, fields in override.items():
        config[section].update(fields)
    with pytest.raises(ValueError, match=named):
        app_builder({"config": config})


def test_a_required_api_key_must_be_in_the_environment(monkeypatch):
    from actors.serve_builder import app_builder

    monkeypatch.delenv("AUTOMEM_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="AUTOMEM_API_KEY"):
        app_builder(rendered_app()["args"])
