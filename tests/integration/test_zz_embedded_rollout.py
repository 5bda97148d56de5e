# Run: .venv/bin/python -m pytest tests/integration/test_zz_embedded_rollout.py
"""End to end on the real embedded endpoint: `automem rollout` drives SmolLM2 on vLLM through Ray Serve LLM with
the agent's own grammars, and every memory turn and action it stores is well-formed.

(Named to run after the serve tests, which start the shared endpoint.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from automem.trajectory import load as load_store

from .conftest import ROOT

pytestmark = [pytest.mark.serve, pytest.mark.e2e, pytest.mark.ray]


def test_rollout_on_the_embedded_model(embedded_endpoint, tmp_path):
    import ray

    out = tmp_path / "store"
    env = {**os.environ, "AUTOMEM_API_KEY": embedded_endpoint.api_key, "RAY_AUTH_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "rollout",
        "--env",
        "crafter-v0",
        "--episodes",
        "2",
        "--concurrency",
        "2",
        "--max-steps",
        "3",
        "--seeds",
        "1-2",
        "--endpoint",
        embedded_endpoint.base_url,
        "--model",
        embedded_endpoint.model_id,
        "--out",
        str(out),
        "--run-id",
        "e2e",
        "--address",
        ray.get_runtime_context().gcs_address,
        "--no-progress",
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    tables = load_store(str(out), run_id="e2e")
    assert tables["episodes"].num_rows == 2
    turns = tables["turns"].to_pylist()
    assert len(turns) == 2 * 3 * 3
    truncated = 0
    for t in turns:
        assert t["prompt_tokens"] > 0 and t["completion_tokens"] > 0
        if t["phase"] == "action":
            assert re.fullmatch(t["constraint"], t["completion"]), t["completion"]
            continue
        # Constrained decoding through the real server: a memory turn matches its grammar, unless the model ran
        # into the turn's token limit before DONE (known: the grammar admits 4 lines of 120 characters, more than
        # memory_max_tokens=120 tokens), in which case what it wrote is a prefix of a grammar string.
        if not re.fullmatch(t["constraint"], t["completion"]):
            assert t["completion_tokens"] >= 120, t["completion"]
            lines = t["completion"].split("\n")[:-1]  # complete lines of the cut-off turn
            assert re.fullmatch(t["constraint"], "\n".join([*lines, "DONE"]) if lines else "DONE"), t[
                "completion"
            ]
            truncated += 1
    actions = [t for t in turns if t["phase"] == "action"]
    assert all(t["action_valid"] for t in actions)
    ops = tables["memory_ops"].to_pylist()
    parse_errors = [o for o in ops if o["error_kind"] == "parse"]
    assert len(parse_errors) <= truncated, (
        "only a turn cut by the token limit may leave an unreadable last line"
    )
