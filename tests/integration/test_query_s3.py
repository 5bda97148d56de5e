# Run: .venv/bin/python -m pytest tests/integration/test_query_s3.py
"""Query, diagnose and report on a store in S3 (moto's real HTTP server), and the Ray Data reader: committed
rows only, through pyarrow's S3 filesystem with the explicit endpoint (DuckDB has no httpfs offline: docs/LOG.md,
"platform facts")."""

from __future__ import annotations

import json

import pytest

from automem.trajectory import Storage
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode

pytestmark = pytest.mark.s3


def _fill(root: str) -> None:
    st = Storage(root, retry_for_s=10)
    for i in range(3):
        steps = [
            Step(
                f"obs {t}",
                log=[f"APPEND notes.md fact {t}", "READ missing.md"],
                plan=["SEARCH fact"],
                state_key=str(t),
            )
            for t in range(4)
        ]
        write_episode(st, "run1", f"ep-{i}", steps, seed=i, scaffold_id="s3-scaffold")
    write_episode(st, "run1", "ep-uncommitted", [Step("x")] * 7, commit=False)


def test_query_diagnose_and_report_on_s3(s3_root, tmp_path, capsys):
    import automem

    _fill(s3_root)
    t = automem.query(s3_root, "SELECT count(*) AS n, count(DISTINCT episode_id) AS e FROM steps")
    assert t.to_pylist() == [{"n": 12, "e": 3}]
    assert (
        main(["query", s3_root, "SELECT op, count(*) AS n FROM memory_ops GROUP BY op ORDER BY op", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [
        {"op": "APPEND", "n": 12},
        {"op": "READ", "n": 12},
        {"op": "SEARCH", "n": 12},
    ]
    assert main(["diagnose", s3_root, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["scaffold_id"] == "s3-scaffold" and row["episodes"] == 3
    assert row["unknown_file_rate"] == pytest.approx(1 / 3) and row["redundant_write_rate"] == 0.0
    out = tmp_path / "r.html"
    assert main(["report", s3_root, "--out", str(out)]) == 0
    assert "3 episodes, 3 in the replay" in capsys.readouterr().out and out.stat().st_size > 10_000

    # The Loop 2 ledger in a bucket: appended once per evaluation, read through the ledger view.
    from automem.distill.ledger import append, ledger_row

    row = ledger_row(adapter="b:x", base_model="b", lineage=None, source_run="run1", seeds="0-2", turns=3,
                     modes=["free"], comparisons=[{"mode": "free", "metric": "n_ops", "base": 1.0, "adapter": 2.0,
                                                   "diff": 1.0, "lo": 0.5, "hi": 1.5}], cost={"requests": 6})  # fmt: skip
    assert append(s3_root, row)[1] is True and append(s3_root, row)[1] is False
    got = automem.query(s3_root, "SELECT adapter, requests, metrics[1].diff AS d FROM ledger").to_pylist()
    assert got == [{"adapter": "b:x", "requests": 6, "d": 1.0}]


@pytest.mark.ray
def test_ray_data_reads_committed_rows_from_s3(s3_root, ray_session):
    from actors.data import ray_dataset

    _fill(s3_root)
    rows = ray_dataset(
        s3_root, "steps", columns=["step"]
    ).take_all()  # one execution: each costs seconds here
    assert len(rows) == 12 and set(rows[0]) == {"run_id", "episode_id", "attempt", "step"}
    assert sorted({r["episode_id"] for r in rows}) == ["ep-0", "ep-1", "ep-2"]  # not ep-uncommitted


@pytest.mark.ray
def test_ray_data_strict_keeps_the_committed_attempt_and_names_a_misnamed_file(s3_root, ray_session):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from actors.data import ray_dataset

    st = Storage(s3_root, retry_for_s=10)
    write_episode(st, "run1", "ep-a", [Step("o")] * 3, attempt=2)
    write_episode(st, "run1", "ep-b", [Step("o")] * 2)
    path = st.path("tables", "steps", "run1", "ep-a.parquet")
    rows = pq.read_table(path, filesystem=st.fs)
    stale = rows.set_column(rows.schema.get_field_index("attempt"), "attempt", pa.array([1] * 3, pa.int32()))
    st.write_table(path, pa.concat_tables([stale.cast(rows.schema), rows]))  # an earlier attempt's rows too
    got = ray_dataset(s3_root, "steps", columns=["step"], strict=True).take_all()
    assert sorted((r["episode_id"], r["attempt"]) for r in got) == [("ep-a", 2)] * 3 + [("ep-b", 1)] * 2
    st.write_table(path, pq.read_table(st.path("tables", "steps", "run1", "ep-b.parquet"), filesystem=st.fs))
    with pytest.raises(Exception) as err:  # a StoreFileError, raised in a Ray task
        ray_dataset(s3_root, "steps", strict=True).take_all()
    assert "ep-a.parquet: holds rows of episode run1/ep-b, not of run1/ep-a" in str(err.value)
