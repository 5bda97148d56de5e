# Run: .venv/bin/python -m pytest tests/unit/test_cli_memory.py
"""`automem memory run` as a user runs it: real subprocess, real directory, hostile input."""

from __future__ import annotations

import json
import os
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


def cli_bytes(*args, stdin: bytes | None = None):
    """The CLI with byte arguments; its stdout must decode as strict UTF-8 (it is JSON for other programs)."""
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "memory", "run", *args], capture_output=True, input=stdin
    )
    return res.returncode, res.stdout.decode("utf-8"), res.stderr.decode(errors="replace")


def test_audit_inputs_print_a_json_array_never_a_traceback(tmp_path):
    root = tmp_path / "r"
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    root.mkdir()
    os.link(outside, root / "hard.md")
    cases = [
        # numbers that are digits to str.isdigit() but not to int(), and one past the int-string limit
        (["READ n.md ² ²\nTAIL n.md ³\nTAIL n.md " + "9" * 5000], None, ["bad_args"] * 3),
        # bytes that are not UTF-8, in a text and in a name; then LIST must still print valid UTF-8
        ([b"WRITE a.md x\xffy\nWRITE c\xff.md x\nLIST"], None, ["bad_args", "bad_args", None]),
        (["-"], b'WRITE b.md \xff\nAPPEND notes.md a "b\nDONE', ["bad_args", None]),
        (['[{"op":"WRITE","args":["s.md","\\ud800"]}]', "--json"], None, ["bad_args"]),
        (['[{"op":"FOO","args":5},{"op":"FOO","args":[]}]', "--json"], None, ["parse", "unknown_op"]),
        (["APPEND hard.md pwned\nREAD hard.md"], None, ["path", "path"]),
        (
            [
                "WRITE .tmp-x.md ok\nUPSERT notes.md k\x01 v\nWRITE \u202ex.md x\nWRITE \x85y.md x\nLIST\t\n**LIST**"
            ],
            None,
            ["path", "bad_args", "path", "path", None, None],
        ),
    ]
    for args, stdin, kinds in cases:
        rc, out, err = cli_bytes(str(root), *args, stdin=stdin)
        assert rc == 0 and "Traceback" not in err, (args, err)
        results = json.loads(out)
        assert [r.get("error_kind") for r in results] == kinds, (args, results)
        assert all(r["op"] is None or r["op"].isupper() for r in results)
    assert outside.read_text() == "secret\n"
    assert sorted(p.name for p in root.iterdir()) == ["hard.md", "notes.md"]
    assert (root / "notes.md").read_text() == 'a "b\n'
    # Usage errors exit 2 with a message, never a traceback.
    rc, out, err = cli_bytes(str(root), "-", "--json", stdin=b"[" * 100_000 + b"]" * 100_000)
    assert rc == 2 and "nested too deeply" in err and "Traceback" not in err
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"id: x\n\xff\xfe\n")
    rc, out, err = cli_bytes(str(root), "LIST", "--scaffold", str(bad))
    assert rc == 2 and "not UTF-8" in err and "bin.yaml" in err and "Traceback" not in err


def test_long_input_is_echoed_shortened_and_runs_whole(tmp_path):
    """A 5 MB line refused by the quota came back as 5 MB of JSON; now each echo is bounded and says what it cut."""
    from automem.memory.results import ECHO_ARGS, ECHO_CHARS

    big = "y" * 5_000_000
    res = cli(str(tmp_path), "-", stdin=f"APPEND notes.md {big}\n{'z' * 1_000_000}")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) < 5000
    quota, garbage = json.loads(res.stdout)
    assert quota["error_kind"] == "quota" and quota["args"][0] == "notes.md"
    assert quota["args"][1] == "y" * ECHO_CHARS + f"... [{5_000_000 - ECHO_CHARS} more characters cut]"
    assert garbage["op"] is None and garbage["raw"].endswith(
        f"... [{1_000_000 - ECHO_CHARS} more characters cut]"
    )
    assert not (tmp_path / "notes.md").exists()
    # Only the echo is cut: an operation that succeeds writes every character; an unknown operation with a long
    # name and many arguments echoes a bounded name, message and argument list.
    content = "line\n" * 500
    ops = [{"op": "WRITE", "args": ["a.md", content]}, {"op": "X" * 100_000, "args": ["k"] * 1000}]
    res = cli(str(tmp_path), "-", "--json", stdin=json.dumps(ops))
    assert res.returncode == 0 and len(res.stdout) < 10_000, len(res.stdout)
    wrote, unknown = json.loads(res.stdout)
    assert wrote["ok"] and (tmp_path / "a.md").read_text() == content
    assert wrote["args"][1] == content[:ECHO_CHARS] + f"... [{len(content) - ECHO_CHARS} more characters cut]"
    assert unknown["error_kind"] == "unknown_op" and "more characters cut]" in unknown["error"]
    assert unknown["args"] == ["k"] * ECHO_ARGS + [f"... [{1000 - ECHO_ARGS} more arguments cut]"]
