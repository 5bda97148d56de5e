# Run: .venv/bin/python -m pytest tests/unit/test_cli_memory.py
"""`automem memory run` as a user runs it: real subprocess, real directory, hostile input."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "memory", "run", *args],
        capture_output=True,
        text=True,
        input=stdin,
    )


def test_runs_operations_and_prints_json(tmp_path):
    root = tmp_path / "new" / "mem"
    res = cli(str(root), "APPEND notes.md tree to the north\nSEARCH TREE *\nREAD nope.md\nblah blah\nDONE")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [o["op"] for o in out] == ["APPEND", "SEARCH", "READ", None]
    assert [o["ok"] for o in out] == [True, True, False, False]
    assert out[1]["output"] == "notes.md:1: tree to the north"
    assert "error" in out[2] and "output" not in out[2]
    assert (root / "notes.md").read_text() == "tree to the north\n"


def test_stdin_and_json_mode(tmp_path):
    res = cli(str(tmp_path), "-", stdin="APPEND a.md one\n")
    assert json.loads(res.stdout)[0]["ok"]
    ops = [{"op": "append", "args": ["a.md", "two words"]}, {"op": "READ", "args": ["a.md", "2", "2"]}]
    res = cli(str(tmp_path), json.dumps(ops), "--json")
    assert json.loads(res.stdout)[1]["output"] == "two words"
    res = cli(str(tmp_path), "-", "--json", stdin='{"not": "an array"}')
    assert res.returncode == 2 and "JSON array" in res.stderr


def test_hostile_input_exits_zero_and_touches_nothing_outside(tmp_path):
    root, victim = tmp_path / "root", tmp_path / "victim.md"
    victim.write_text("keep\n")
    hostile = [
        {"op": "WRITE", "args": ["../victim.md", "pwned"]},
        {"op": "WRITE", "args": [str(victim), "pwned"]},
        {"op": "DELETE", "args": ["../victim.md"]},
        {"op": "READ", "args": ["a\u0000b"]},
        {"op": "READ", "args": []},
        {"op": "TELEPORT", "args": ["x"]},
        {"op": "APPEND", "args": ["x" * 5000, "y"]},
        {"op": "APPEND", "args": ["a.md", "y" * 100000]},
    ]
    res = cli(str(root), json.dumps(hostile), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out) == len(hostile) and not any(o["ok"] for o in out)
    assert victim.read_text() == "keep\n"
    garbage = "\x00\x01" + "READ " * 1000 + '"\\u' + "\n" * 50
    res = cli(str(root), "-", stdin=garbage)  # argv cannot carry NUL; stdin can
    assert res.returncode == 0 and all(not o["ok"] for o in json.loads(res.stdout))


def test_scaffold_quotas_and_enabled_ops(tmp_path):
    res = cli(str(tmp_path), "DELETE notes.md", "--scaffold", "crafter-v0")
    assert json.loads(res.stdout)[0]["error_kind"] == "disabled"
    res = cli(str(tmp_path), "LIST", "--scaffold", "nope")
    assert res.returncode == 2 and "nope" in res.stderr


def test_usage_errors_exit_nonzero(tmp_path):
    assert cli().returncode == 2
    assert cli(str(tmp_path), "LIST", "--bogus").returncode == 2
    helped = cli("--help")
    assert helped.returncode == 0 and "1-based, inclusive" in helped.stdout
