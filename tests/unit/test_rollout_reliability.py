# Run: .venv/bin/python -m pytest tests/unit/test_rollout_reliability.py
"""The scheduler's retry rules, backoff, placement timeout, permanent storage errors and runner death causes, on a
stand-in for Ray (no cluster); the storage layer's fail-fast errors on a real full file system."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid

import pytest
from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

import actors.scheduler as scheduler_mod
from actors.scheduler import RolloutScheduler, RunnersFailing, StorageFailing, _death_reason
from automem.rollout import RunnerConfig, make_jobs, parse_seeds
from automem.scaffold import load
from automem.trajectory import PermanentStorageError, Storage, StorageError


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class FakeHandle:
    """A runner whose ``run`` tasks end as ``outcome(job)`` says; ``stats`` answers unless ``placed`` is False."""

    def __init__(self, ray, outcome, placed=True):
        self.run = _Remote(lambda job: ray.submit(outcome(job), job))
        self.stats = _Remote(lambda: ray.submit({} if placed else ray.PENDING))


class FakeRay:
    """Just enough of Ray for the scheduler: refs are ints, each with an outcome (a value, or the exception
    ``get`` raises). Records when each episode attempt was dispatched."""

    PENDING = object()

    def __init__(self):
        self.outcomes = {}
        self.dispatched = []  # (monotonic time, episode id, attempt)
        self.n = 0

    def submit(self, outcome, job=None):
        self.n += 1
        self.outcomes[self.n] = outcome
        if job is not None:
            self.dispatched.append((time.monotonic(), job.episode_id, job.attempt))
        return self.n

    def wait(self, refs, num_returns=1, timeout=None):
        ready = [r for r in refs if self.outcomes[r] is not self.PENDING]
        if not ready and timeout:
            time.sleep(min(timeout, 0.05))
        return ready, [r for r in refs if r not in ready]

    def get(self, ref, timeout=None):
        out = self.outcomes[ref]
        if isinstance(out, list):
            return [self.get(r) for r in out]
        if isinstance(out, Exception):
            raise out
        return out

    def kill(self, handle):
        pass


def _jobs(n=2, attempt=1):
    jobs = make_jobs(
        run_id="r",
        env_id="corridor-v0",
        episodes=n,
        seeds=list(range(n)),
        scaffold=load("crafter-v0"),
        memory_model="m",
        action_model="m",
        max_steps=3,
    )
    return [j if attempt == 1 else j.__class__(**{**j.__dict__, "attempt": attempt}) for j in jobs]


def _scheduler(monkeypatch, tmp_path, jobs, outcome, *, placed=True, **kw):
    fake = FakeRay()
    monkeypatch.setattr(scheduler_mod, "ray", fake)
    sched = RolloutScheduler(
        jobs,
        RunnerConfig(endpoint="http://unused", storage_root=str(tmp_path)),
        num_runners=1,
        concurrency=len(jobs),
        **kw,
    )
    monkeypatch.setattr(
        sched, "_start_runner", lambda i: scheduler_mod._Runner(FakeHandle(fake, outcome, placed), i)
    )
    return sched, fake


def _fails(job):
    return RayTaskError("run", "traceback", RuntimeError(f"endpoint down ({job.attempt})"))


def test_a_resumed_episode_gets_max_attempts_tries_in_this_run(monkeypatch, tmp_path):
    # A resume starts from attempt 4 (numbers continue); --max-attempts 3 still means three tries now.
    sched, fake = _scheduler(monkeypatch, tmp_path, _jobs(2, attempt=4), _fails, max_attempts=3)
    result = sched.run()
    tried = sorted((e, a) for _, e, a in fake.dispatched)
    assert [a for e, a in tried if e.startswith("000000")] == [4, 5, 6]
    assert len(result.failed) == 2 and "endpoint down (6)" in next(iter(result.failed.values()))
    assert result.attempts == 6


def test_retries_back_off_with_jitter(monkeypatch, tmp_path):
    sched, fake = _scheduler(monkeypatch, tmp_path, _jobs(1), _fails, max_attempts=3, retry_backoff_s=0.2)
    sched.run()
    times = [t for t, _, _ in fake.dispatched]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 2
    # base 0.2 s, doubled: 0.1-0.3 s before the second attempt, 0.2-0.6 s before the third (jitter 0.5-1.5x)
    assert 0.09 <= gaps[0] <= 0.5 and 0.19 <= gaps[1] <= 0.9, gaps
    assert 0.29 <= sched.result.retry_wait_seconds <= 0.9


def test_no_backoff_for_attempts_lost_with_their_runner(monkeypatch, tmp_path):
    sched, fake = _scheduler(monkeypatch, tmp_path, _jobs(1), _fails, retry_backoff_s=30.0)
    job = sched.queue.popleft()
    sched.retries.dispatched(job)
    sched._retry_or_give_up(job, "runner died: x", backoff=False)
    assert [j.attempt for j in sched.queue] == [2] and not sched.retries.waiting()


def test_a_permanent_storage_error_stops_the_run_at_once(monkeypatch, tmp_path):
    def full(job):
        cause = PermanentStorageError("write x failed (no space left on the device): [errno 28]")
        return RayTaskError("run", "traceback", cause)

    sched, _ = _scheduler(monkeypatch, tmp_path, _jobs(3), full, max_attempts=3, retry_backoff_s=60)
    t0 = time.monotonic()
    with pytest.raises(StorageFailing, match="no space left"):
        sched.run()
    assert time.monotonic() - t0 < 10 and sched.result.attempts <= 3


def test_runners_that_cannot_be_placed_fail_after_the_placement_timeout(monkeypatch, tmp_path):
    sched, _ = _scheduler(
        monkeypatch,
        tmp_path,
        _jobs(1),
        _fails,
        placed=False,
        placement_timeout_s=1.5,
        runner_resources={"rollout": 0.01},
    )
    t0 = time.monotonic()
    with pytest.raises(RunnersFailing, match=r"no runner actor was placed within 2 s.*'rollout': 0.01"):
        sched.run()
    assert 1.4 <= time.monotonic() - t0 < 10


# Ray 2.60's texts for an actor's death, as seen on this machine (ray.kill, kill -9 of the worker, node loss).
_KILL = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: A\n\tactor_id: e78\n\tpid: 8992\n"
    "The actor is dead because it was killed by `ray.kill`."
)
_SIGKILL = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: A\n\tpid: 8991\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: "
    "Worker unexpectedly exits with a connection error code 2. End of file. Some common causes include: (1) the "
    "process was killed by the OOM killer due to high memory usage, (2) ray stop --force was called, or (3) the "
    "worker crashed unexpectedly due to SIGSEGV or another unexpected error."
)
_NODE = "The actor died unexpectedly before finishing this task.\nThe actor died because its node has died. Node Id: 1f"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (_KILL, "killed (ray.kill)"),
        (_SIGKILL, "its process was killed (SIGKILL"),
        (_NODE, "its node was lost"),
    ],
)
def test_a_runners_death_is_recorded_with_the_cause_ray_gives(text, cause):
    exc = ActorDiedError()
    exc.error_msg = text
    why = _death_reason(exc)
    assert why.startswith(f"ActorDiedError: {cause}"), why
    assert "class_name" not in why and len(why) < 700


def test_a_preempted_node_is_named():
    exc = RayActorError(error_msg="The actor died unexpectedly before finishing this task.", preempted=True)
    assert "preempted" in _death_reason(exc)


# -- storage: errors that waiting does not heal fail at once ----------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_unhealable_os_errors_are_not_retried(tmp_path, code):
    st = Storage(str(tmp_path), retry_for_s=300)
    calls = []

    def fail():
        calls.append(1)
        raise OSError(code, os.strerror(code))

    t0 = time.monotonic()
    with pytest.raises(PermanentStorageError):
        st.retry("write x", fail)
    assert len(calls) == 1 and time.monotonic() - t0 < 1


def test_transient_errors_are_still_retried(tmp_path):
    st = Storage(str(tmp_path), retry_for_s=1.0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError(errno.ECONNRESET, "connection reset")
        return "ok"

    assert st.retry("read x", flaky) == "ok" and len(calls) == 3


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root, as on the project's machines and CI); skipped where mounting is refused."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_a_write_at_once(full_tmpfs):
    st = Storage(str(full_tmpfs), retry_for_s=300)
    t0 = time.monotonic()
    with pytest.raises(PermanentStorageError, match="no space left"):
        st.write_bytes(st.path("tables", "big.bin"), b"x" * 1_000_000)
    assert time.monotonic() - t0 < 5
    assert not [p for p in st.list_files(st.path("tables"), hidden=True)], "no temporary file is left"


def test_seed_ranges_stay_lazy():
    seeds = parse_seeds("0-1000000000000,7")  # a list of these would need terabytes
    assert len(seeds) == 10**12 + 2 and seeds[0] == 0 and seeds[10**12] == 10**12 and seeds[-1] == 7
    assert parse_seeds("0-3, 7") == [0, 1, 2, 3, 7] and list(parse_seeds("5-6")) == [5, 6]
    jobs = make_jobs(
        run_id="r",
        env_id="corridor-v0",
        episodes=3,
        seeds=parse_seeds("10-1000000000000"),
        scaffold=load("crafter-v0"),
        memory_model="m",
        action_model="m",
        max_steps=1,
    )
    assert [j.seed for j in jobs] == [10, 11, 12]


def test_storage_error_is_the_base_of_the_permanent_one():
    assert issubclass(PermanentStorageError, StorageError)


# -- the rollout's summary: the embedded endpoint it leaves running --------------------------------------------


def test_the_summary_says_the_embedded_endpoint_is_still_running(tmp_path, monkeypatch, capsys):
    from automem.serving.state import EndpointState, write_state
    from pipelines._common import say_embedded_still_running as _say_embedded_still_running

    monkeypatch.setenv("AUTOMEM_STATE_DIR", str(tmp_path))
    _say_embedded_still_running("http://127.0.0.1:8000/v1")
    assert capsys.readouterr().err == "", "nothing is said when no endpoint is recorded"
    write_state(
        EndpointState(pid=os.getpid(), base_url="http://127.0.0.1:8000/v1", model_id="m", phase="ready")
    )
    _say_embedded_still_running("http://127.0.0.1:8000/v1")
    err = capsys.readouterr().err
    assert "still running at http://127.0.0.1:8000/v1" in err and "automem serve --stop" in err
