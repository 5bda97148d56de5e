"""Serving: the serve config schema, the adapter registry, the local S3 server, the API-key check, endpoint state.

No Ray here; ``actors/serve_app.py`` builds the Ray Serve LLM app from these pieces.
"""

from automem.serving.adapters import AdapterRegistry
from automem.serving.config import ConfigError, ServeConfig, load_config, parse_config

__all__ = ["AdapterRegistry", "ConfigError", "ServeConfig", "load_config", "parse_config"]
