# Run: .venv/bin/python -m pytest tests/unit/test_rollout_lifecycle.py
"""The rollout lifecycle as a library call, on the in-process executor (no Ray) against the real HTTP stub model:
a fresh run, a resume after a crash that ends with the store a clean run gives, a resume that would change the
run refused, a busy run refused; and RolloutConfig itself (YAML plus overrides, unknown keys, the manifest)."""

from __future__ import annotations

import asyncio
import os

import pyarrow.dataset as ds
import pytest

from automem.config import ConfigError
from automem.llm import ScriptedChatModel
from automem.llm.fake import step_script
from automem.rollout import RolloutConfig, RolloutError, RunBusy, load_rollout_config, run_rollout
from automem.rollout.config import rollout_config
from automem.rollout.local import LocalExecutor
from automem.trajectory import Storage, read_manifest
from automem.trajectory import load as load_store
from automem.trajectory.runs import RunLease, staged_attempts


@pytest.fixture
def stub(stub_model):
    return stub_model(latency=0.0)


def config(root, url, **kw) -> RolloutConfig:
    base = dict(
        env="corridor-v0",
        episodes=4,
        seeds="0-3",
        max_steps=3,
        concurrency=1,
        endpoint=url,
        out=str(root),
        run_id="r1",
        executor="local",
        retry_backoff=0,
    )
    return RolloutConfig(**{**base, **kw})


def store_summary(root) -> dict:
    tables = load_store(str(root), run_id="r1")
    episodes = {r["episode_id"]: (r["steps"], r["progression"]) for r in tables["episodes"].to_pylist()}
    steps = tables["steps"].group_by("episode_id").aggregate([("step", "count")]).to_pylist()
    return {"episodes": episodes, "steps": {r["episode_id"]: r["step_count"] for r in steps}}


def test_a_fresh_run_commits_every_episode_and_writes_its_manifest(tmp_path, stub):
    result = run_rollout(config(tmp_path, stub.url))
    assert (result.committed, result.failed, result.run_id, result.skipped) == (4, {}, "r1", 0)
    assert sorted(store_summary(tmp_path)["episodes"]) == [f"00000{i}-corridor-v0-s{i}" for i in range(4)]
    manifest = read_manifest(str(tmp_path), "r1")
    assert rollout_config(manifest["config"]) == config(tmp_path, stub.url)  # the manifest round-trips
    assert manifest["endpoint"] == stub.url and manifest["seeds"] == [0, 1, 2, 3]


class SlowScript(ScriptedChatModel):
    """The deterministic scripted model (walk right, note it), 0.15 s a call: an episode takes ~1.4 s."""

    async def chat(self, messages, **kw):
        await asyncio.sleep(0.15)
        return await super().chat(messages, **kw)


def scripted() -> LocalExecutor:
    return LocalExecutor(client=SlowScript(step_script("right", "moved")))


def test_a_resume_after_a_crash_runs_only_what_is_missing_and_ends_as_a_clean_run(tmp_path, stub):
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    run_rollout(config(clean, stub.url), scripted())
    crashed_once = []

    def crash_in_the_third(p):  # Ctrl-C while the third episode plays (progress comes once a second)
        if p.done >= 2 and p.running and not crashed_once:
            crashed_once.append(p)
            raise KeyboardInterrupt

    first = run_rollout(config(crashed, stub.url), scripted(), on_progress=crash_in_the_third)
    assert first.interrupted and 2 <= first.committed < 4
    assert staged_attempts(Storage(str(crashed)), "r1"), "the interrupted attempt left its staging"
    plain = ds.dataset(str(crashed / "tables" / "steps"), format="parquet").to_table()
    committed = set(store_summary(crashed)["episodes"])
    assert set(plain.column("episode_id").to_pylist()) <= committed, "no rows of an uncommitted episode"

    said: list[str] = []
    second = run_rollout(config(crashed, stub.url), scripted(), resume=True, say=said.append)
    assert second.skipped == first.committed and second.committed == 4 - first.committed
    assert any("already committed" in s and "interrupted attempts" in s for s in said), said
    assert store_summary(crashed) == store_summary(clean)
    attempts = load_store(str(crashed), tables=("attempts",))["attempts"].to_pylist()
    assert any(a["status"] == "failed" and "interrupted" in a["error"] for a in attempts)


def test_a_resume_that_would_change_the_run_is_refused(tmp_path, stub):
    run_rollout(config(tmp_path, stub.url, episodes=2, seeds="0-1"))
    with pytest.raises(RolloutError, match="episodes 5 differs from the run's 2"):
        run_rollout(config(tmp_path, stub.url, episodes=5, seeds="0-1"), resume=True)
    with pytest.raises(RolloutError, match="scaffold minihack-v0 differs"):
        run_rollout(RolloutConfig(run_id="r1", out=str(tmp_path), scaffold="minihack-v0"), resume=True)
    # The same values again, or only how-to-run settings changed, are fine; it has nothing left to do.
    again = run_rollout(config(tmp_path, stub.url, episodes=2, seeds="0-1", concurrency=7), resume=True)
    assert again.committed == 0 and again.skipped == 2


def test_a_run_held_by_a_live_driver_is_refused(tmp_path, stub):
    run_rollout(config(tmp_path, stub.url, episodes=1, seeds="0"))
    other = RunLease(Storage(str(tmp_path)), "r1")
    other.acquire()  # this process is alive, so its heartbeat counts
    with pytest.raises(RunBusy, match="in use by driver"):
        run_rollout(config(tmp_path, stub.url, episodes=1, seeds="0"), resume=True)
    other.release()


def test_a_new_run_that_cannot_start_leaves_nothing(tmp_path):
    with pytest.raises(RolloutError, match="not reachable"):
        run_rollout(config(tmp_path, "http://127.0.0.1:9/v1"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tables").exists()
    assert not (tmp_path / "_staging").exists()  # the write probe's folder goes too
    with pytest.raises(RolloutError, match="nothing to resume"):
        run_rollout(config(tmp_path, "http://127.0.0.1:9/v1"), resume=True)


# -- RolloutConfig ---------------------------------------------------------------------------------------------


def test_a_yaml_file_plus_overrides_gives_the_expected_config(tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text("env: nethack-v0\nepisodes: 16\nseeds: [1, 5, 9]\nrunner_resources: {rollout: 0.01}\n")
    cfg = load_rollout_config(str(path), ["episodes=64", "concurrency=32", "episode_timeout=90"])
    assert (cfg.env, cfg.episodes, cfg.concurrency, cfg.seeds) == ("nethack-v0", 64, 32, "1,5,9")
    assert cfg.runner_resources == {"rollout": 0.01} and cfg.episode_timeout == 90.0
    assert cfg.model_fields_set >= {"env", "episodes", "concurrency", "seeds"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["episods=3"], "episods: unknown field"),
        (["scaffold.prompts.bogus=1"], "bogus: unknown field"),
        (["seeds=9-1"], "bad seed list part '9-1'"),
        (["runner_resources.CPU=1"], "CPU is Ray's own resource"),
        (["episode_timeout=.nan"], "episode_timeout: must be a finite number"),
        (["executor=spark"], "executor: Input should be 'ray' or 'local'"),
        (["episodes"], "expected key=value"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_rollout_config(None, overrides)


def test_the_config_is_frozen_and_its_fields_documented():
    cfg = RolloutConfig()
    with pytest.raises(ValueError):
        cfg.episodes = 3  # type: ignore[misc]
    undocumented = [k for k, f in RolloutConfig.model_fields.items() if not f.description]
    assert not undocumented, undocumented
    assert os.path.basename(cfg.out) == "runs" and cfg.executor == "ray"
