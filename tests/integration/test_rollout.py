# Run: .venv/bin/python -m pytest tests/integration/test_rollout.py
"""Distributed rollouts on the real local Ray cluster, a real HTTP stub model and real Parquet (local and S3).

Reliability: a killed runner actor, a flaky model endpoint, a 30 s bucket outage, a killed driver resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pyarrow.dataset as ds
import pytest

from automem.rollout import RunnerConfig, make_jobs
from automem.scaffold import load
from automem.trajectory import Storage, committed_episode_ids, dataset
from automem.trajectory import load as load_store

from .conftest import ROOT, wait_for
from .faultproxy import FaultProxy

pytestmark = [pytest.mark.ray]
ENV_KW = {"length": 10**6, "max_steps": 10**6}


def jobs(run_id, n, steps):
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    return make_jobs(
        run_id=run_id,
        env_id="corridor-v0",
        episodes=n,
        seeds=list(range(n)),
        scaffold=sc,
        memory_model="stub",
        action_model="stub",
        max_steps=steps,
        env_kwargs=ENV_KW,
    )


def scheduler(job_list, root, endpoint, *, runner_env=None, **kw):
    from actors.scheduler import RolloutScheduler

    cfg_kw = {k: kw.pop(k) for k in ("request_timeout_s", "request_retries", "storage_retry_s") if k in kw}
    cfg = RunnerConfig(endpoint=endpoint, storage_root=root, flush_rows=16, **cfg_kw)
    kw.setdefault("num_runners", 2)
    kw.setdefault("concurrency", len(job_list))
    return RolloutScheduler(job_list, cfg, runner_env=runner_env, runner_cpus=0.25, **kw)


def assert_complete(root, run_id, expected_ids, steps, *, exact=True):
    """Every episode once, and every table holds exactly its rows (``steps`` each, or at most, when the game
    can end early: the CLI's five-cell corridor can be walked to its goal)."""
    tables = load_store(root, run_id=run_id)
    ids = tables["episodes"].column("episode_id").to_pylist()
    assert sorted(ids) == sorted(expected_ids), "every episode exactly once"
    per_episode = dict(zip(ids, tables["episodes"].column("steps").to_pylist(), strict=True))
    if exact:
        assert set(per_episode.values()) == {steps}, per_episode
    else:
        assert all(1 <= s <= steps for s in per_episode.values()), per_episode
    # No partial or duplicated episode in the plain (unfiltered) tables either.
    storage = Storage(root)
    plain_steps = dataset(storage, "steps").to_table(filter=ds.field("run_id") == run_id)
    assert plain_steps.num_rows == sum(per_episode.values())
    keys = set(
        zip(plain_steps.column("episode_id").to_pylist(), plain_steps.column("step").to_pylist(), strict=True)
    )
    assert len(keys) == plain_steps.num_rows
    assert tables["turns"].num_rows == sum(per_episode.values()) * 3
    return tables


def test_rollout_to_s3_is_readable_with_pyarrow_and_ray_data(ray_session, s3_root, moto_s3, stub_model):
    stub = stub_model(latency=0.05)
    job_list = jobs("s3run", 6, 4)
    result = scheduler(job_list, s3_root, stub.url, runner_env=moto_s3["env"]).run()
    assert len(result.done) == 6 and not result.failed
    assert_complete(s3_root, "s3run", [j.episode_id for j in job_list], 4)
    import ray

    from automem.trajectory import s3_filesystem

    files = Storage(s3_root).list_files(Storage(s3_root).path("tables", "steps"))
    rd = ray.data.read_parquet(files, filesystem=s3_filesystem())
    assert rd.count() == 24


def test_killed_runner_loses_and_duplicates_nothing(ray_session, tmp_path, stub_model):
    import ray

    stub = stub_model(latency=0.2)
    job_list = jobs("kill", 12, 6)
    sched = scheduler(job_list, str(tmp_path), stub.url, num_runners=2, concurrency=6)
    thread = threading.Thread(target=sched.run)
    thread.start()
    wait_for(
        lambda: sched.runners and any(r.inflight for r in sched.runners) and stub.stats()["requests"] > 20,
        what="episodes in flight",
    )
    victim = next(r for r in sched.runners if r.inflight)
    ray.kill(victim.handle, no_restart=True)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert sched.result.runner_restarts >= 1 and not sched.result.failed
    assert_complete(str(tmp_path), "kill", [j.episode_id for j in job_list], 6)
    attempts = load_store(str(tmp_path), tables=("attempts",))["attempts"].to_pylist()
    assert any(
        a["status"] == "failed" and "runner died: ActorDiedError: killed (ray.kill)" in a["error"]
        for a in attempts
    ), [a["error"] for a in attempts]


def test_flaky_endpoint_is_retried_and_failures_recorded(ray_session, tmp_path, stub_model):
    stub = stub_model(latency=0.02, error_rate=0.25, hang_rate=0.03, hang_s=60)
    job_list = jobs("flaky", 8, 4)
    sched = scheduler(
        job_list, str(tmp_path), stub.url, request_timeout_s=1.0, request_retries=1, max_attempts=20
    )
    result = sched.run()
    assert len(result.done) == 8 and not result.failed
    assert stub.stats()["errors"] > 0 and stub.stats()["hangs"] > 0
    assert_complete(str(tmp_path), "flaky", [j.episode_id for j in job_list], 4)
    attempts = load_store(str(tmp_path), tables=("attempts",))["attempts"].to_pylist()
    failed = [a for a in attempts if a["status"] == "failed"]
    assert failed and all("EndpointUnavailableError" in a["error"] for a in failed)


@pytest.mark.s3
@pytest.mark.slow
def test_bucket_outage_backs_off_and_loses_nothing(ray_session, moto_s3, stub_model):
    from .conftest import make_bucket

    proxy = FaultProxy(moto_s3["port"])
    root = f"s3://{make_bucket(moto_s3['url'])}/t"
    env = {**moto_s3["env"], "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
    stub = stub_model(latency=0.1)
    job_list = jobs("outage", 10, 5)
    sched = scheduler(job_list, root, stub.url, runner_env=env, num_runners=1, concurrency=5, max_attempts=1)
    thread = threading.Thread(target=sched.run)
    thread.start()
    wait_for(lambda: committed_episode_ids(Storage(root), "outage"), timeout=120, what="a first commit")
    proxy.outage(30)
    thread.join(timeout=400)
    proxy.close()
    assert proxy.refused > 0, "the outage must have hit some writes"
    assert len(sched.result.done) == 10 and not sched.result.failed, sched.result.failed
    assert_complete(root, "outage", [j.episode_id for j in job_list], 5)


@pytest.mark.s3
def test_killed_driver_resumes_to_the_same_set_of_episodes(ray_session, s3_root, moto_s3, stub_model):
    import ray

    stub = stub_model(latency=0.3)
    env = {**os.environ, **moto_s3["env"], "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    address = ray.get_runtime_context().gcs_address
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "rollout",
        "--env",
        "corridor-v0",
        "--episodes",
        "10",
        "--concurrency",
        "3",
        "--max-steps",
        "5",
        "--seeds",
        "0-9",
        "--endpoint",
        stub.url,
        "--out",
        s3_root,
        "--run-id",
        "resume1",
        "--address",
        address,
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    storage = Storage(s3_root)
    wait_for(lambda: len(committed_episode_ids(storage, "resume1")) >= 2, timeout=180, what="two commits")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = committed_episode_ids(storage, "resume1")
    assert 2 <= len(before) < 10
    # The resume needs only the run id and the root: what to play comes from the run's manifest.
    resume = [
        *cmd[:4],
        "--resume",
        "--run-id",
        "resume1",
        "--out",
        s3_root,
        "--endpoint",
        stub.url,
        "--address",
        address,
        "--no-progress",
    ]
    res = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already committed" in res.stderr
    expected = [f"{i:06d}-corridor-v0-s{i}" for i in range(10)]
    assert_complete(s3_root, "resume1", expected, 5, exact=False)
    # Rows of episodes the killed driver left half-done are gone from the plain tables too.
    plain = dataset(storage, "memory_ops").to_table(columns=["episode_id"])
    assert set(plain.column("episode_id").to_pylist()) == set(expected)
    # A resume that asks for other episodes than the run's is refused before anything starts.
    res = subprocess.run([*resume, "--episodes", "3"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "--episodes 3 differs from the run's 10" in res.stderr
    res = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "is complete; nothing to do" in res.stderr


def test_model_requests_in_flight_are_capped_over_all_runners(ray_session, tmp_path, stub_model):
    stub = stub_model(latency=0.3)
    job_list = jobs("capped", 12, 3)
    result = scheduler(job_list, str(tmp_path), stub.url, num_runners=3, max_llm_inflight=4).run()
    assert len(result.done) == 12 and not result.failed
    seen = stub.stats()["max_inflight"]
    assert 2 <= seen <= 4, f"{seen} requests were open at once; the cap is 4 (12 episodes in flight)"


def test_bad_input_is_rejected_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nenv: crafter\nbogus: 1\n")
    base = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "rollout",
        "--out",
        str(tmp_path / "out"),
        "--endpoint",
        "http://127.0.0.1:9/v1",
    ]
    res = subprocess.run([*base, "--scaffold", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "bogus" in res.stderr
    res = subprocess.run([*base, "--env", "no-such-env-v0"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown env id" in res.stderr
    res = subprocess.run([*base, "--seeds", "9-1"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "seed" in res.stderr
    res = subprocess.run([*base, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "--run-id" in res.stderr
    res = subprocess.run(base, cwd=ROOT, capture_output=True, text=True)  # dead endpoint: clear error
    assert res.returncode == 2 and "not reachable" in res.stderr
    assert not (tmp_path / "out" / "tables").exists()


def test_runners_that_cannot_start_stop_the_run_with_the_reason(ray_session, tmp_path, stub_model):
    from actors.scheduler import RolloutScheduler, RunnersFailing

    cfg = RunnerConfig(
        endpoint="http://127.0.0.1:9/v1", storage_root=str(tmp_path), tokenizer_dir="/nonexistent"
    )
    sched = RolloutScheduler(
        jobs("nostart", 2, 2), cfg, num_runners=1, concurrency=2, runner_cpus=0.25, max_attempts=50
    )
    with pytest.raises(RunnersFailing, match="could not start.*tokenizer.json"):
        sched.run()
    assert sched.result.runner_restarts == 0 and not sched.result.done
