# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_zz_evolve_llm.py -q
"""``automem evolve --reviewer openai`` with the embedded model as reviewer and as the agent (small budgets): the
135M model's answer arrives through structured outputs and is recorded in the lineage whatever it proposes; the
loop never crashes on it and never writes an invalid scaffold.

(Named to run after the serve tests, which start the shared endpoint.)
"""

from __future__ import annotations

import json
import os

import pytest

from automem.evolve.patch import PatchRejected, parse_patch
from automem.scaffold import from_yaml
from automem.trajectory import connect

from .conftest import run_cli

pytestmark = [pytest.mark.serve, pytest.mark.e2e, pytest.mark.ray]


def test_evolve_with_the_embedded_model_as_reviewer(embedded_endpoint, tmp_path):
    key = embedded_endpoint.api_key
    env = {**os.environ, "AUTOMEM_API_KEY": key, "OPENAI_API_KEY": key, "RAY_AUTH_MODE": "disabled"}
    url, model = embedded_endpoint.base_url, embedded_endpoint.model_id
    store = tmp_path / "store"
    res = run_cli(
        "evolve",
        "--env",
        "crafter-v0",
        "--reviewer",
        f"openai:{model}@{url}",
        "--endpoint",
        url,
        "--model",
        model,
        "--tune-seeds",
        "0-1",
        "--holdout-seeds",
        "none",
        "--iterations",
        "1",
        "--max-steps",
        "3",
        "--executor",
        "local",
        "--digest-tokens",
        "600",
        "--out",
        str(store),
        "--no-progress",
        env=env,
        timeout=900,
    )
    assert "accepted" in res.stdout and "final scaffold" in res.stdout
    con = connect(str(store))
    try:
        row = con.sql("SELECT * FROM lineage WHERE iteration = 1").to_arrow_table().to_pylist()[0]
    finally:
        con.close()
    assert row["reviewer"] == f"openai:{model}@{url}"
    assert 0 < row["digest_tokens"] <= 600
    assert row["decision"] in (
        "accepted",
        "rejected",
        "invalid_patch",
        "reviewer_error",
        "no_proposal",
        "duplicate",
    )
    if row["decision"] in ("accepted", "rejected"):
        from_yaml(row["scaffold_yaml"])  # what was played validates
        assert row["n_seeds"] == 2
    if row["patch_json"]:
        # Structured outputs: even the 135M model's answer is JSON of the patch's shape, unless it ran out of tokens.
        try:
            parse_patch(row["patch_json"])
        except PatchRejected as exc:
            assert exc.kind == "unparseable" and len(row["patch_json"]) > 100, row["patch_json"][:500]
    print(json.dumps({k: row[k] for k in ("decision", "reason", "reject_kind", "rationale")}))
