# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/integration/test_distill_dataset_io.py
"""A Loop 2 dataset where it is used: written by `automem distill dataset` to a bucket on a real S3-compatible
server over HTTP (moto's), manifest last, with the same id as a folder build of the same store; read back with
Ray Data (`ray.data.read_parquet` of its rows file, from a folder and from the bucket) and through the
`dataset_rows` view of `automem query` on the bucket, where a dataset without its manifest is not visible."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from automem.distill import DatasetConfig, build_dataset
from automem.trajectory import Storage, query, s3_filesystem
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode

STEPS = [
    Step("o0", log=["APPEND a.md tree north"]),
    Step("o1", log=["APPEND a.md rock east"], plan=["SEARCH tree"]),
    Step("o2", log=["READ missing.md"], plan=["READ a.md"]),
    Step("o3", plan=["SEARCH rock"]),
]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    for i, progression in enumerate((0.9, 0.4, 0.6)):
        write_episode(root, "r1", f"e{i}", STEPS, seed=i % 2, progression=progression)
    return str(root)


class _Recording(Storage):
    """The output root, recording the order of the files it writes (``write_table`` may call ``write_bytes``)."""

    def __init__(self, root: str) -> None:
        super().__init__(root, retry_for_s=10)
        self.writes: list[str] = []

    def _record(self, path: str) -> None:
        if path not in self.writes[-1:]:
            self.writes.append(path)

    def write_table(self, path, table):
        self._record(path)
        super().write_table(path, table)

    def write_bytes(self, path, data):
        self._record(path)
        super().write_bytes(path, data)


@pytest.mark.s3
def test_cli_writes_a_dataset_to_s3_manifest_last_with_the_folder_builds_id(store, s3_root, tmp_path, capsys):
    strategy = "wellformed+outcome"
    folder = build_dataset(DatasetConfig(source=store, strategy=strategy), str(tmp_path / "data"))
    recording = _Recording(s3_root)
    direct = build_dataset(DatasetConfig(source=store, strategy=strategy), recording)
    assert [p.rsplit("/", 1)[-1] for p in recording.writes] == ["rows.parquet", "manifest.json"]
    assert direct.dataset_id == folder.dataset_id and not direct.existed
    assert main(["distill", "dataset", "--from", store, "--strategy", strategy, "--out", s3_root]) == 0
    out = capsys.readouterr().out
    assert f"dataset {folder.dataset_id} ({folder.manifest['rows']} rows, already built)" in out
    st = Storage(s3_root, retry_for_s=10)
    manifest = json.loads(st.read_bytes(f"{direct.path}/manifest.json"))
    assert manifest["content_hash"] == folder.manifest["content_hash"] and manifest["rows"] > 0
    remote = pq.read_table(f"{direct.path}/rows.parquet", filesystem=st.fs)
    assert remote.equals(pq.read_table(f"{folder.path}/rows.parquet"))
    # Another selection is a new dataset, written through the CLI.
    assert main(["distill", "dataset", "--from", store, "--strategy", "wellformed", "--out", s3_root]) == 0
    other = capsys.readouterr().out.strip().splitlines()[-1].split()[1]
    assert other != folder.dataset_id
    # The bucket as `automem query` sees it: both datasets, and not a copy without its manifest.
    st.write_table(st.path("datasets", "unfinished", "rows.parquet"), remote)
    counts = query(s3_root, "SELECT dataset_id, count(*) AS n FROM dataset_rows GROUP BY 1 ORDER BY 1")
    assert sorted(counts.column("dataset_id").to_pylist()) == sorted([folder.dataset_id, other])
    assert dict(zip(*counts.to_pydict().values(), strict=True))[folder.dataset_id] == remote.num_rows


@pytest.mark.ray
def test_ray_data_reads_a_dataset_from_a_folder(store, tmp_path, ray_session):
    import ray

    result = build_dataset(DatasetConfig(source=store, strategy="wellformed"), str(tmp_path / "data"))
    path = f"{result.path}/rows.parquet"
    got = ray.data.read_parquet(path).take_all()  # one execution: each costs seconds here
    expected = pq.read_table(path).to_pylist()
    key = lambda r: (r["episode_id"], r["step"], r["phase"], r["turn"])  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key) and len(got) == result.manifest["rows"]
    assert json.loads(got[0]["messages"])[0]["role"] == "system" and got[0]["completion"].endswith("DONE")


@pytest.mark.ray
@pytest.mark.s3
def test_ray_data_reads_a_dataset_from_s3(store, s3_root, ray_session):
    import ray

    result = build_dataset(DatasetConfig(source=store, strategy="wellformed"), s3_root)
    fs = s3_filesystem()
    got = ray.data.read_parquet(f"{result.path}/rows.parquet", filesystem=fs).take_all()
    expected = pq.read_table(f"{result.path}/rows.parquet", filesystem=fs).to_pylist()
    key = lambda r: (r["episode_id"], r["step"], r["phase"], r["turn"])  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key) and len(got) == result.manifest["rows"]
