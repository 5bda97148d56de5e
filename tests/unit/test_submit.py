# Run: .venv/bin/python -m pytest tests/unit/test_submit.py
"""`automem submit` builds the `ray job submit` line: working dir packaged, env forwarded, automem as a module."""

from __future__ import annotations

import argparse
import json

import pytest

from pipelines.submit import build_command


def ns(**kw):
    base = {"address": "http://127.0.0.1:8265", "working_dir": ".", "no_wait": False, "command": []}
    return argparse.Namespace(**{**base, **kw})


def test_command_line(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AUTOMEM_API_KEY", "k")
    cmd = build_command(ns(command=["--", "automem", "rollout", "--episodes", "4"], no_wait=True))
    assert cmd[1:3] == ["job", "submit"]
    assert cmd[cmd.index("--working-dir") + 1] == "."
    env = json.loads(cmd[cmd.index("--runtime-env-json") + 1])["env_vars"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000" and env["AUTOMEM_API_KEY"] == "k"
    assert env["RAY_AUTH_MODE"]
    assert "--no-wait" in cmd
    assert cmd[cmd.index("--") + 1 :] == ["python", "-m", "pipelines.cli", "rollout", "--episodes", "4"]


def test_usage_errors(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="nothing to submit"):
        build_command(ns(command=["--"]))
    with pytest.raises(ValueError, match="--address"):
        build_command(ns(address=None, command=["--", "automem", "env", "list"]))
