"""The one way automem's configs are written: strict pydantic models, YAML files, ``key=value`` overrides.

Every config (serve, rollout, and the learning loops' to come) derives from :class:`StrictConfig`: unknown keys are
rejected with the field's path, values are frozen, and each field carries its docstring (``use_attribute_docstrings``)
so ``--help`` and error messages can quote it. :func:`parse_model` and :func:`load_model` apply overrides such as
``episodes=64`` or ``engine.max_model_len=2048`` (values parsed as YAML scalars) before validating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class StrictConfig(BaseModel):
    """Base of every config: unknown keys rejected, frozen, documented fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the field."""


M = TypeVar("M", bound=BaseModel)


def format_errors(exc: ValidationError, source: str, what: str, labels: dict[str, str] | None = None) -> str:
    """One line per offending field: ``  path.to.field: message`` under ``<source>: invalid <what>``.

    Args:
        labels: extra names for top-level fields, shown beside them (a CLI's flags: ``episodes (--episodes)``).
    """
    lines = [f"{source}: invalid {what}"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if labels and where in labels:
            where = f"{where} ({labels[where]})"
        msg = (
            "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        )
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")  # cross-field checks name their fields
    return "\n".join(lines)


def apply_overrides(data: dict[str, Any] | None, overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``dotted.key=value`` set (value parsed as a YAML scalar or flow list).

    Raises:
        ConfigError: an override that is not ``key=value``, or that descends into a non-mapping.
    """
    tree: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data or {}))) or {}  # deep copy, plain types
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not YAML ({exc})") from None
        keys = key.strip().split(".")
        node = tree
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return tree


def parse_model(
    cls: type[M],
    data: dict[str, Any] | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    source: str = "<dict>",
    what: str = "config",
    labels: dict[str, str] | None = None,
) -> M:
    """Validate ``data`` (a parsed YAML mapping) as ``cls`` after applying ``key=value`` overrides.

    Raises:
        ConfigError: naming every offending field.
    """
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    tree = apply_overrides(data, overrides)
    try:
        return cls.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source, what, labels)) from None


def read_yaml(path: str | Path) -> dict[str, Any] | None:
    """A YAML file's top-level mapping (None for an empty file).

    Raises:
        ConfigError: a missing or unreadable file, bad YAML, or a top level that is not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_model(
    cls: type[M],
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    what: str = "config",
) -> M:
    """``cls`` from a YAML file (None: the defaults) plus overrides.

    Raises:
        ConfigError: as :func:`read_yaml` and :func:`parse_model`.
    """
    if path is None:
        return parse_model(cls, {}, overrides, source="<defaults>", what=what)
    return parse_model(cls, read_yaml(path), overrides, source=str(path), what=what)
