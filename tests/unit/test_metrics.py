# Run: .venv/bin/python -m pytest tests/unit/test_metrics.py
"""The metrics seam without Ray: what the runner, the writer and training record, and the Grafana dashboard
covering exactly the metrics the code defines."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from automem import metrics as m
from automem.llm import ScriptedChatModel
from automem.llm.fake import phase_of, step_script
from automem.rollout import EpisodeRunner, RunnerConfig, make_jobs
from automem.scaffold import load

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/automem.json"
VLLM_METRICS = {
    # vLLM's engine metrics as Ray Serve LLM exports them (vllm/v1/metrics/ray_wrappers.py turns ":" into "_").
    "ray_vllm_num_requests_running",
    "ray_vllm_num_requests_waiting",
    "ray_vllm_generation_tokens_total",
    "ray_vllm_prompt_tokens_total",
    "ray_vllm_kv_cache_usage_perc",
    "ray_vllm_e2e_request_latency_seconds",
    "ray_vllm_time_to_first_token_seconds",
    "ray_vllm_prefix_cache_queries_total",
    "ray_vllm_prefix_cache_hits_total",
}


def jobs(n, steps=3, run_id="r1"):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    return make_jobs(
        run_id=run_id,
        env_id="corridor-v0",
        episodes=n,
        seeds=list(range(n)),
        scaffold=sc,
        memory_model="m",
        action_model="m",
        max_steps=steps,
        env_kwargs={"length": 100, "max_steps": 100},
    )


def play(tmp_path, client, job_list, sink):
    runner = EpisodeRunner(RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path)), client, sink)

    async def main():
        return await asyncio.gather(*(runner.run(j) for j in job_list), return_exceptions=True)

    return asyncio.run(main())


def test_recording_sink_checks_kind_and_tags_as_ray_would():
    sink = m.RecordingMetrics()
    sink.inc(m.STEPS, tags={"run_id": "r", "env": "e"})
    with pytest.raises(ValueError, match="tags"):
        sink.inc(m.STEPS, tags={"run_id": "r"})
    with pytest.raises(ValueError, match="counter, not a gauge"):
        sink.set(m.STEPS, 1, {"run_id": "r", "env": "e"})
    with pytest.raises(ValueError, match="only goes up"):
        sink.inc(m.STEPS, -1, {"run_id": "r", "env": "e"})


def test_every_metric_is_named_and_documented_once():
    names = [x.name for x in m.METRICS]
    assert len(names) == len(set(names))
    for x in m.METRICS:
        assert re.fullmatch(r"automem_[a-z_]+", x.name) and x.description
        assert "episode_id" not in x.tags, "one time series per episode would explode Prometheus"
        assert bool(x.boundaries) == (x.kind == "histogram")
    with pytest.raises(ValueError, match="positive increasing"):
        m.Metric("automem_x", "histogram", "x", boundaries=(0.0, 1.0))  # Ray refuses a bound of 0
    assert (
        m.STEPS.exported == "ray_automem_steps_total"
        and m.LLM_LATENCY.exported == "ray_" + m.LLM_LATENCY.name
    )


def test_runner_records_episodes_steps_requests_and_commits(tmp_path):
    sink = m.RecordingMetrics()
    client = ScriptedChatModel(step_script("right", "moved"))
    outcomes = play(tmp_path, client, jobs(3, steps=4), sink)
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    assert sink.total(m.EPISODES_COMMITTED) == 3 and sink.total(m.EPISODES_FAILED) == 0
    assert sink.total(m.STEPS) == sum(o.steps for o in outcomes) == 12
    assert sorted(sink.values(m.PROGRESSION)) == sorted(o.progression for o in outcomes)
    assert len(sink.values(m.LLM_LATENCY)) == len(client.calls)
    assert sink.total(m.LLM_TOKENS) == sum(o.tokens for o in outcomes)
    assert sink.gauge(m.LLM_INFLIGHT) == 0, "every request closed"
    assert len(sink.values(m.COMMIT_LATENCY)) == 3 and all(v > 0 for v in sink.values(m.COMMIT_LATENCY))
    assert sink.total(m.BYTES_WRITTEN) == sum(o.bytes_written for o in outcomes) > 0
    assert sink.total(m.MEMORY_OP_ERRORS) == 0
    tags = {k for k, _ in sink.counters if k == m.STEPS.name}
    assert tags == {m.STEPS.name}
    assert (m.STEPS.name, (("env", "corridor-v0"), ("run_id", "r1"))) in sink.counters


def test_runner_records_failed_episodes_requests_and_memory_ops(tmp_path):
    def reply(call):
        if phase_of(call) == "plan":
            return "READ no-such-file.md\nDONE"  # an error result, returned to the model
        return step_script("right", "moved")(call)

    sink = m.RecordingMetrics()
    play(tmp_path, ScriptedChatModel(reply, check_constraint=False), jobs(1, steps=2), sink)
    assert sink.total(m.MEMORY_OP_ERRORS) >= 2 and sink.total(m.EPISODES_COMMITTED) == 1

    class Down(ScriptedChatModel):
        async def chat(self, messages, **kw):
            raise ConnectionError("endpoint down")

    sink = m.RecordingMetrics()
    outcomes = play(tmp_path / "down", Down([]), jobs(2, run_id="r2"), sink)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert sink.total(m.EPISODES_FAILED) == 2 and sink.total(m.EPISODES_COMMITTED) == 0
    assert sink.total(m.LLM_ERRORS) == 2 and not sink.values(m.LLM_LATENCY)
    assert sink.gauge(m.LLM_INFLIGHT) == 0


def test_training_callback_counts_steps_tokens_and_keeps_the_loss():
    from automem.training.metrics import metrics_callback

    sink = m.RecordingMetrics()
    cb = metrics_callback(sink, "run-a")
    state = SimpleNamespace(global_step=0)
    for step, tokens, loss in ((1, 500, 2.3), (2, 1000, 2.1), (3, 1600, 1.9)):
        state.global_step = step
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": loss, "num_tokens": tokens, "learning_rate": 1e-4})
    assert sink.total(m.TRAIN_STEPS) == 3 and sink.total(m.TRAIN_TOKENS) == 1600
    assert sink.gauge(m.TRAIN_LOSS, run="run-a") == 1.9


def _panel_exprs(dashboard):
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    return panels, [t["expr"] for p in panels for t in p.get("targets", [])]


def test_grafana_dashboard_charts_every_metric_and_only_existing_ones():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    panels, exprs = _panel_exprs(dashboard)
    assert all(p.get("title") and p.get("targets") and p.get("gridPos") for p in panels)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b(ray_(?:automem|vllm)_[A-Za-z0-9_]*)", expr):
            used.add(re.sub(r"_(bucket|count|sum)$", "", name))
    defined = {x.exported for x in m.METRICS}
    assert defined - used == set(), "metrics without a panel"
    assert used - defined - VLLM_METRICS == set(), "panels charting metrics nobody exports"
    assert used & VLLM_METRICS, "the engine's own panels"
