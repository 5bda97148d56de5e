# Run: .venv/bin/python -m pytest tests/integration/test_rollout_races.py
"""Races on a real S3-compatible server (moto's, behind a proxy that adds latency): drivers taking one run at once,
and two resumes of a killed run started together.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from automem.trajectory import Storage, committed_episode_ids
from automem.trajectory import load as load_store
from automem.trajectory.runs import RunLease
from automem.trajectory.schemas import TABLES
from tests.unit.test_commit_protocol import put_stale_lease, race_for_leases

from .conftest import ROOT, make_bucket, wait_for
from .faultproxy import FaultProxy

pytestmark = [pytest.mark.s3]


class _SlowReader:
    def __init__(self, reader: asyncio.StreamReader, delay_s: float) -> None:
        self.reader, self.delay_s = reader, delay_s

    async def read(self, n: int) -> bytes:
        await asyncio.sleep(self.delay_s)
        return await self.reader.read(n)


class SlowProxy(FaultProxy):
    """A FaultProxy that delays every chunk a client sends by ``delay_s``: a bucket far away."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.delay_s = delay_s
        super().__init__(target_port)

    async def _handle(self, reader, writer) -> None:
        await super()._handle(_SlowReader(reader, self.delay_s), writer)


def test_drivers_taking_a_run_on_s3_at_once_exactly_one_wins(s3_root):
    runs = [f"fresh{i}" for i in range(5)] + [f"stale{i}" for i in range(5)]
    storage = Storage(s3_root)
    for run in runs[5:]:
        put_stale_lease(storage, run)
    winners = race_for_leases(s3_root, runs)
    assert {run: len(w) for run, w in winners.items()} == dict.fromkeys(runs, 1)
    for run, [owner] in winners.items():
        assert RunLease(storage, run).holder()[0] == owner


def assert_consistent(root: str, run_id: str, expected: list[str]) -> None:
    """Every episode committed once; each record's rows (all tables, plain reads too) are of its own attempt, as
    many steps and turns as it says; an ``ok`` row for each; nothing left in staging."""
    tables = load_store(root, run_id=run_id, tables=(*TABLES,))
    records = {r["episode_id"]: r for r in tables["episodes"].to_pylist()}
    assert sorted(records) == sorted(expected)
    storage = Storage(root)
    for table in ("steps", "turns", "memory_ops", "memory_files"):
        folder = storage.path("tables", table, run_id)
        plain = ds.dataset(folder, format="parquet", filesystem=storage.fs, schema=TABLES[table]).to_table()
        keys = list(
            zip(plain.column("episode_id").to_pylist(), plain.column("attempt").to_pylist(), strict=True)
        )
        assert {(e, records[e]["attempt"]) for e in records} >= set(keys), table  # no other attempt's rows
        if table in ("steps", "turns"):
            for e, r in records.items():
                assert keys.count((e, r["attempt"])) == r[table], (table, e, r[table])
    ok = {(a["episode_id"], a["attempt"]) for a in tables["attempts"].to_pylist() if a["status"] == "ok"}
    assert ok == {(e, r["attempt"]) for e, r in records.items()}
    assert storage.list_files(storage.path("_staging", run_id), hidden=True) == []


@pytest.mark.ray
@pytest.mark.slow
def test_two_resumes_at_once_one_is_refused_and_the_store_stays_consistent(ray_session, moto_s3, stub_model):
    import ray

    proxy = SlowProxy(moto_s3["port"], delay_s=0.1)
    root = f"s3://{make_bucket(moto_s3['url'])}/t"
    env = {
        **os.environ,
        **moto_s3["env"],
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    stub = stub_model(latency=0.1)
    address = ray.get_runtime_context().gcs_address
    common = [
        "--out",
        root,
        "--run-id",
        "twice",
        "--endpoint",
        stub.url,
        "--address",
        address,
        "--no-progress",
    ]
    cli = [sys.executable, "-m", "pipelines.cli", "rollout"]
    first = [*cli, "--env", "corridor-v0", "--episodes", "8", "--concurrency", "4", "--max-steps", "5"]
    proc = subprocess.Popen(
        [*first, "--seeds", "0-7", *common],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    storage = Storage(root)
    try:
        wait_for(lambda: len(committed_episode_ids(storage, "twice")) >= 2, timeout=180, what="two commits")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Both resumes find the killed driver's lease (its process is gone) and take the run over at once.
    resumes = [
        subprocess.Popen(
            [*cli, "--resume", *common],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in resumes]
    proxy.close()
    codes = sorted(p.returncode for p in resumes)
    report = "\n".join(f"rc={p.returncode}\n{err[-2000:]}" for p, (_, err) in zip(resumes, outs, strict=True))
    assert codes == [0, 2], report
    refused = next(err for p, (_, err) in zip(resumes, outs, strict=True) if p.returncode == 2)
    assert "in use by driver" in refused or "taken by driver" in refused, refused
    assert_consistent(root, "twice", [f"{i:06d}-corridor-v0-s{i}" for i in range(8)])


def test_a_server_that_ignores_conditional_writes_is_refused_up_front(s3_root, monkeypatch):
    import boto3

    from automem.trajectory import StorageError
    from automem.trajectory import storage as storage_module

    Storage(s3_root).check()  # moto honours If-None-Match

    def put_ignoring_the_condition(path, data):
        bucket, _, key = path.partition("/")
        boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).put_object(
            Bucket=bucket, Key=key, Body=data
        )
        return True

    monkeypatch.setattr(storage_module, "_s3_create", put_ignoring_the_condition)
    with pytest.raises(StorageError, match="ignores conditional writes"):
        Storage(s3_root).check()
