# Run: .venv/bin/python -m pytest tests/unit/test_scaffold.py
"""Scaffolds are strict data: built-ins validate, bad ones are rejected naming the field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from automem.scaffold import ScaffoldError, builtin_names, content_id, diff, from_yaml, load, to_yaml


def test_builtins_exist_and_round_trip():
    assert {"crafter-v0", "minihack-v0", "nethack-v0"} <= set(builtin_names())
    for name in builtin_names():
        s = load(name)
        assert s.constrained, "v0 scaffolds default to constrained output"
        again = from_yaml(to_yaml(s))
        assert again == s and content_id(again) == content_id(s)


def test_content_id_ignores_name_but_not_content():
    a = load("crafter-v0")
    renamed = a.model_copy(update={"id": "crafter-v1", "parent_id": "crafter-v0"})
    assert content_id(renamed) == content_id(a)
    changed = a.model_copy(update={"constrained": False})
    assert content_id(changed) != content_id(a)
    text = diff(a, changed)
    assert "-constrained: true" in text and "+constrained: false" in text
    assert diff(a, a) == ""


@pytest.mark.parametrize(
    "patch, field",
    [
        ("bogus: 1", "bogus"),
        ("operations: [READ, TELEPORT]", "operations"),
        ("quotas: {max_files: 0}", "quotas.max_files"),
        ("quotas: {max_filez: 3}", "quotas.max_filez"),
        ("files: [{name: ../x.md, purpose: p}]", "files.0.name"),
        ("files: [{name: noext, purpose: p}]", "files.0.name"),
        ("context: {include_files: [missing.md]}", "include_files"),
        ("sampling: {temperature: 9}", "sampling.temperature"),
        ("id: Bad Id", "id"),
    ],
)
def test_invalid_scaffolds_name_the_field(patch, field):
    base = to_yaml(load("crafter-v0"))
    key = patch.split(":", 1)[0]
    lines = [ln for ln in base.splitlines() if not ln.startswith(key + ":")]
    # drop the nested block of the replaced key too
    text = "\n".join(lines)
    if key in ("quotas", "context", "sampling", "files", "operations"):
        out, skip = [], False
        for ln in base.splitlines():
            if ln.startswith(key + ":"):
                skip = True
                continue
            if skip and (ln.startswith(" ") or ln.startswith("-")):
                continue
            skip = False
            out.append(ln)
        text = "\n".join(out)
    with pytest.raises(ScaffoldError) as err:
        from_yaml(text + "\n" + patch)
    assert field in str(err.value)


def test_unknown_name_lists_builtins():
    with pytest.raises(ScaffoldError, match="crafter-v0"):
        load("no-such-scaffold")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True)


def test_cli_show_validate_diff(tmp_path):
    for name in ("crafter-v0", "minihack-v0", "nethack-v0"):
        shown = _cli("scaffold", "show", name)
        assert shown.returncode == 0, shown.stderr
        path = tmp_path / f"{name}.yaml"
        path.write_text(shown.stdout)
        assert _cli("scaffold", "validate", str(path)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(shown.stdout + "\nunknown_key: 3\n")
    res = _cli("scaffold", "validate", str(bad))
    assert res.returncode == 1 and "unknown_key" in res.stderr
    res = _cli("scaffold", "diff", "crafter-v0", "minihack-v0")
    assert res.returncode == 0 and "+id: minihack-v0" in res.stdout


def test_a_file_that_is_not_utf8_is_a_named_error(tmp_path):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(to_yaml(load("crafter-v0")).encode() + b"\n# \xff\xfe\n")
    with pytest.raises(ScaffoldError, match="not UTF-8"):
        load(bad)
    res = _cli("scaffold", "validate", str(bad))
    assert res.returncode == 1 and "bin.yaml" in res.stderr and "not UTF-8" in res.stderr
    assert "Traceback" not in res.stderr
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 50_000 + "]" * 50_000)
    with pytest.raises(ScaffoldError, match="deep.yaml"):
        load(deep)
