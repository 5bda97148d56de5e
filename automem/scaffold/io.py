"""Load, save, identify and compare scaffolds."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from automem.scaffold.schema import Scaffold

DEFAULTS_DIR = Path(__file__).parent / "defaults"


class ScaffoldError(ValueError):
    """A scaffold that cannot be found or fails validation; the message names the offending field."""


def builtin_names() -> list[str]:
    """Names of the scaffolds that ship with automem (``crafter-v0``, ...)."""
    return sorted(p.stem for p in DEFAULTS_DIR.glob("*.yaml"))


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"invalid scaffold {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key (not in the schema)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def from_yaml(text: str, source: str = "<text>") -> Scaffold:
    """Parse and validate scaffold YAML.

    Raises:
        ScaffoldError: bad YAML, or a field that fails validation (named in the message).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScaffoldError(f"invalid scaffold {source}: not YAML: {exc}") from None
    except RecursionError:
        raise ScaffoldError(f"invalid scaffold {source}: nested too deeply") from None
    if not isinstance(data, dict):
        raise ScaffoldError(f"invalid scaffold {source}: expected a mapping at the top level")
    try:
        return Scaffold.model_validate(data)
    except ValidationError as exc:
        raise ScaffoldError(_format_validation(exc, source)) from None


def load(name_or_path: str | Path) -> Scaffold:
    """A built-in scaffold by name, or a YAML file by path.

    Raises:
        ScaffoldError: unknown name, unreadable or non-UTF-8 file, or invalid content.
    """
    path = Path(name_or_path)
    try:
        if not path.exists() and str(name_or_path) in builtin_names():
            path = DEFAULTS_DIR / f"{name_or_path}.yaml"
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        is_file = False
    if not is_file:
        raise ScaffoldError(
            f"no scaffold {str(name_or_path)!r}: not a file, and not a built-in ({', '.join(builtin_names())})"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScaffoldError(
            f"invalid scaffold {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ScaffoldError(f"cannot read scaffold {path}: {exc.strerror or exc}") from None
    return from_yaml(text, str(path))


def to_yaml(scaffold: Scaffold) -> str:
    """Readable YAML (block strings for prompts) that ``from_yaml`` reads back to an equal scaffold."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, s: str) -> yaml.Node:
        style = "|" if "\n" in s else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(scaffold.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False, width=110)


def save(scaffold: Scaffold, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_yaml(scaffold))
    return path


def content_id(scaffold: Scaffold) -> str:
    """A hash of the canonical form, ignoring ``id`` and ``parent_id``: equal content, equal id."""
    data = scaffold.model_dump(mode="json", exclude={"id", "parent_id"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def diff(a: Scaffold, b: Scaffold) -> str:
    """A unified diff of the two scaffolds' YAML; empty when they are equal."""
    lines = difflib.unified_diff(
        to_yaml(a).splitlines(keepends=True),
        to_yaml(b).splitlines(keepends=True),
        fromfile=a.id,
        tofile=b.id,
    )
    return "".join(lines)
