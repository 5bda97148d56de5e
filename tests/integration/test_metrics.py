# Run: .venv/bin/python -m pytest tests/integration/test_metrics.py
"""automem's metrics as Prometheus sees them: a small rollout on the session cluster against the stub model, then
the node's Ray metrics agent page (the session cluster has no dashboard; the agent exports all the same) read until
the runners' counters arrive (Ray exports about every 10 s). The training metrics are checked on the Ray Train run
of tests/integration/test_distill_train.py (``check_training_metrics``), which is not repeated here."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from automem import metrics as m
from automem.trajectory import load as load_store

from .test_rollout import jobs, scheduler

pytestmark = [pytest.mark.ray]

SERIES = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every labelled series on a Prometheus text page: ``(name, labels, value)``."""
    out = []
    for line in httpx.get(url, timeout=30).text.splitlines():
        match = SERIES.match(line)
        if match:
            out.append((match[1], dict(LABEL.findall(match[2])), float(match[3])))
    return out


def total(series, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    return sum(v for n, ls, v in series if n == name and all(ls.get(k) == x for k, x in labels.items()))


def test_a_rollout_exports_its_metrics_through_rays_agent(ray_session, tmp_path, stub_model):
    from actors.cluster import metrics_url

    stub = stub_model(latency=0.02)
    episodes, steps = 4, 3
    result = scheduler(jobs("metrics1", episodes, steps), str(tmp_path), stub.url).run()
    assert len(result.done) == episodes and not result.failed
    attempts = load_store(str(tmp_path), tables=("attempts",))["attempts"].to_pylist()
    assert not [a for a in attempts if a["status"] == "failed"], (
        "recording a metric must never fail an episode"
    )
    run = {"run_id": "metrics1"}
    url = metrics_url()
    deadline = time.monotonic() + 90
    while True:  # the agent exports every ~10 s, each counter once its first value arrived
        series = scrape(url)
        done = (
            total(series, m.EPISODES_COMMITTED.exported, **run) >= episodes
            and total(series, m.COMMIT_LATENCY.exported + "_count", **run) >= episodes
            and total(series, m.LLM_TOKENS.exported) > 0
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(3)
    names = {n for n, _, _ in series if "automem" in n}
    assert total(series, m.EPISODES_COMMITTED.exported, **run, env="corridor-v0") == episodes, names
    assert total(series, m.EPISODES_FAILED.exported, **run) == 0
    assert total(series, m.STEPS.exported, **run) == episodes * steps
    assert total(series, m.PROGRESSION.exported + "_count", **run) == episodes
    assert total(series, m.COMMIT_LATENCY.exported + "_count", **run) == episodes
    assert total(series, m.COMMIT_LATENCY.exported + "_sum", **run) > 0
    assert total(series, m.BYTES_WRITTEN.exported, **run) > 0
    # Three model turns per step (LOG, PLAN, action) in the stub's scaffold; other tests' runs add to these.
    requests = total(series, m.LLM_LATENCY.exported + "_count", model="stub")
    assert requests >= episodes * steps * 3
    assert total(series, m.LLM_TOKENS.exported, model="stub", kind="prompt") > 0
    assert total(series, m.LLM_TOKENS.exported, model="stub", kind="completion") > 0
    assert any(n == m.LLM_INFLIGHT.exported for n, _, _ in series), names
    # Not == 0: a runner killed by another test in this session may leave its last value behind.
    assert all(v >= 0 for n, _, v in series if n == m.LLM_INFLIGHT.exported)
    assert all(ls.get("run_id") != "metrics1" or "episode_id" not in ls for _, ls, _ in series)


def _wait_for(url: str, name: str, at_least: float, timeout: float = 90, **labels: str):
    deadline = time.monotonic() + timeout
    while True:
        series = scrape(url)
        if total(series, name, **labels) >= at_least or time.monotonic() > deadline:
            return series
        time.sleep(3)


def check_training_metrics(result) -> None:
    """Rank 0 of a finished Ray Train run counted its steps and tokens and kept its last loss, tagged with a run
    name, on the metrics page of this node (``result``: ``train_adapter``'s)."""
    from actors.cluster import metrics_url

    steps = result.metrics["steps"]
    series = _wait_for(metrics_url(), m.TRAIN_STEPS.exported, steps)
    runs = {ls.get("run") for n, ls, _ in series if n == m.TRAIN_STEPS.exported}
    run = next(r for r in runs if r and total(series, m.TRAIN_STEPS.exported, run=r) == steps)
    series = _wait_for(metrics_url(), m.TRAIN_TOKENS.exported, result.metrics["train_tokens"], run=run)
    assert total(series, m.TRAIN_TOKENS.exported, run=run) == result.metrics["train_tokens"]
    losses = [v for n, ls, v in series if n == m.TRAIN_LOSS.exported and ls.get("run") == run]
    assert losses and losses[-1] == pytest.approx(result.metrics["last_loss"], rel=1e-3)
