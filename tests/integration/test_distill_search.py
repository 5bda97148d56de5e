# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_distill_search.py -s
"""`automem distill search` with the stub model: two recipes (two learning rates) are Ray Tune trials, each builds
its dataset (the second reuses the first's: same content), trains a tiny adapter on Ray Train nested in the trial,
and is evaluated on the tuning seed's turns; the best is evaluated once on the held-out seed. The ledger holds a row
per trial and one for the held-out evaluation. Run again, the same command resumes the finished search without
training or asking anything again; declared differently under the same name, it is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from automem.distill.turn_eval import METRICS, MODES
from automem.trajectory import query

from .conftest import run_cli as _cli

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_two_trial_search_with_the_stub_model(ray_session, stub_model, tmp_path):
    import ray

    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    store = tmp_path / "store"
    stub = stub_model()
    # Seeds 1-4 to train on, 5 to tune on, 6 held out: every memory turn appends a note.
    _cli(
        "rollout", "--env", "crafter-v0", "--address", address, "--no-progress", "--out", str(store),
        "--episodes", "6", "--concurrency", "2", "--max-steps", "3", "--seeds", "1-6",
        "--endpoint", stub.url, "--model", "stub", "--run-id", "stub-1",
        env=env,
    )  # fmt: skip
    search = [
        "distill", "search", "--from", str(store), "--out", str(tmp_path / "out"), "--name", "two",
        "--tuning-seeds", "5", "--heldout-seeds", "6", "--strategy", "wellformed",
        "--learning-rate", "1e-3,5e-3", "--endpoint", stub.url, "--model", "stub", "--address", address,
        "--eval-limit", "4", "--metric", "free.wellformed_share",
        "max_steps=2", "num_workers=1", "threads_per_worker=2", "gradient_accumulation_steps=1",
        "min_examples=4", "save_steps=1",
    ]  # fmt: skip
    res = _cli(*search, env=env)
    print(res.stdout)
    folder = tmp_path / "out" / "searches" / "two"
    result = json.loads((folder / "result.json").read_text())
    trials = result["trials"]
    assert len(trials) == 2 and not result["failed"], result
    assert {t["recipe"]["learning_rate"] for t in trials} == {1e-3, 5e-3}
    # One dataset for both (same strategy, same content); tuning and held-out seeds kept out of it.
    assert len({t["dataset_id"] for t in trials}) == 1
    manifest = json.loads(
        (tmp_path / "out" / "datasets" / trials[0]["dataset_id"] / "manifest.json").read_text()
    )
    assert set(query(str(tmp_path / "out" / "datasets"), "SELECT DISTINCT seed FROM dataset_rows").column(0).to_pylist()) <= {1, 2, 3, 4}  # fmt: skip
    assert manifest["rows"] >= 4
    for t in trials:
        adapter = Path(t["adapter_dir"])
        assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "training.json").is_file()
        assert t["adapter"] == f"stub:two-{t['key']}"
        assert t["train_loss_first"] is not None and t["evaluation"]["turns"] >= 1
    best = result["best"]
    assert best["key"] in {t["key"] for t in trials}
    assert f"best: {best['adapter']}" in res.stdout
    assert result["heldout"]["adapter"] == best["adapter"] and result["heldout"]["seeds"] == "6"
    measured = {(c["mode"], c["metric"]) for c in result["heldout"]["comparisons"]}
    assert measured == {(m, k) for m in MODES for k in METRICS}
    assert "held-out seeds 6" in res.stdout and "free         wellformed_share" in res.stdout

    ledger = query(
        str(store), "SELECT adapter, seeds, strategy, preset, overrides_json FROM ledger ORDER BY seeds"
    ).to_pylist()
    assert [r["seeds"] for r in ledger] == ["5", "5", "6"], ledger
    assert {r["adapter"] for r in ledger[:2]} == {t["adapter"] for t in trials}
    assert ledger[2]["adapter"] == best["adapter"]
    assert all(r["strategy"] == "wellformed" and r["preset"] == "cpu-small" for r in ledger)
    assert all(json.loads(r["overrides_json"])["max_steps"] == "2" for r in ledger), ledger

    # The same command again: Tune restores the finished search; nothing is trained or evaluated again.
    stamps = {t["key"]: os.stat(Path(t["adapter_dir"]) / "training.json").st_mtime_ns for t in trials}
    requests = stub.stats()["requests"]
    again = _cli(*search, env=env)
    assert f"best: {best['adapter']}" in again.stdout
    assert stub.stats()["requests"] == requests
    assert {t["key"]: os.stat(Path(t["adapter_dir"]) / "training.json").st_mtime_ns for t in trials} == stamps
    assert len(query(str(store), "SELECT * FROM ledger").to_pylist()) == 3

    # Declared differently under the same name: refused, naming what changed.
    other = [a if a != "1e-3,5e-3" else "1e-3" for a in search]
    refused = _cli(*other, env=env, check=False)
    assert refused.returncode == 2 and "declared with other space" in refused.stderr, refused.stderr
