"""Text environments: Crafter, MiniHack and NetHack as deterministic text games with BALROG's progression.

``make_env("crafter-v0")`` builds one by its versioned id; ``list_envs()`` lists them. Game packages are imported
only when an environment is made.
"""

from automem.envs.base import ActionSpec, InvalidActionError, TextEnv, check_seed, validate_action
from automem.envs.registry import EnvSpec, UnknownEnvError, list_envs, make_env

__all__ = [
    "ActionSpec",
    "EnvSpec",
    "InvalidActionError",
    "TextEnv",
    "UnknownEnvError",
    "check_seed",
    "list_envs",
    "make_env",
    "validate_action",
]
