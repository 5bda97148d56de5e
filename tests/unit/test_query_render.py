# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_query_render.py
"""Every DuckDB result type prints in every output format of `automem query` (--json, --csv, text), on a real
store through the command line; a cell JSON cannot hold as it is is converted by the documented rule.

`automem query ROOT "select sum(steps) from episodes" --json` crashed on the DECIMAL that DuckDB's sum returns.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys

import pytest

from pipelines.cli import main
from tests.support.synthetic import Step, write_episode


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("render") / "store"
    write_episode(root, "run1", "ep-a", [Step("obs")] * 2, seed=1)
    write_episode(root, "run1", "ep-b", [Step("obs")] * 3, seed=2)
    return str(root)


def _strict(text: str):
    """JSON as a strict parser reads it: NaN or Infinity unquoted would be an error."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def run(capsys, store, sql, *fmt):
    assert main(["query", store, sql, *fmt]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return out.out


# SQL expression: (JSON value, CSV cell, text cell). None for the text cell: the same as the CSV cell.
CASES = {
    "(SELECT sum(steps) FROM episodes)": (5, "5", None),  # HUGEINT, handed over as a DECIMAL(38,0)
    "(SELECT sum(steps::DECIMAL(18, 2) * 0.5) FROM episodes)": (2.5, "2.500", None),
    "1.10::DECIMAL(10,2)": (1.1, "1.10", None),
    "12345678901234567.89::DECIMAL(38,2)": ("12345678901234567.89", "12345678901234567.89", None),
    "170141183460469231731687303715884105727::HUGEINT": (
        170141183460469231731687303715884105727,
        "170141183460469231731687303715884105727",
        None,
    ),
    "INTERVAL '1 year 2 months 3 days 04:05:06.5'": ("P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S", None),
    "INTERVAL '-90 minutes'": ("PT-1H-30M", "PT-1H-30M", None),
    "INTERVAL '1 month' - INTERVAL '3 days'": ("P1M-3D", "P1M-3D", None),
    "INTERVAL '0 seconds'": ("P0D", "P0D", None),
    "DATE '2024-01-02'": ("2024-01-02", "2024-01-02", None),
    "'infinity'::DATE": ("infinity", "infinity", None),
    "'-infinity'::DATE": ("-infinity", "-infinity", None),
    "'0044-03-15 (BC)'::DATE": ("-0043-03-15", "-0043-03-15", None),
    "TIME '12:34:56.789'": ("12:34:56.789000", "12:34:56.789000", None),
    "TIME '24:00:00'": ("24:00:00", "24:00:00", None),
    "TIMESTAMP '2024-01-02 03:04:05.123456'": (
        "2024-01-02T03:04:05.123456",
        "2024-01-02T03:04:05.123456",
        "2024-01-02 03:04:05.123456",
    ),
    "'2024-01-02 03:04:05.123456789'::TIMESTAMP_NS": (
        "2024-01-02T03:04:05.123456789",
        "2024-01-02T03:04:05.123456789",
        "2024-01-02 03:04:05.123456789",
    ),
    "'2024-01-02 03:04:05'::TIMESTAMP_S": (
        "2024-01-02T03:04:05",
        "2024-01-02T03:04:05",
        "2024-01-02 03:04:05",
    ),
    "'infinity'::TIMESTAMP": ("infinity", "infinity", None),
    "'-infinity'::TIMESTAMPTZ": ("-infinity", "-infinity", None),
    "'290000-01-01 12:00:00'::TIMESTAMP": ("+290000-01-01T12:00:00", "+290000-01-01T12:00:00", None),
    "'\\xAA\\x00ab'::BLOB": ("qgBhYg==", "qgBhYg==", None),  # base64 of the four bytes
    "UUID '12345678-1234-5678-1234-567812345678'": ("12345678-1234-5678-1234-567812345678",) * 2 + (None,),
    "[1, 2, NULL]": ([1, 2, None], "[1, 2, null]", None),
    "[1.5, 2.5]::DOUBLE[2]": ([1.5, 2.5], "[1.5, 2.5]", None),
    "{'a': 1, 'b': [1.5::DECIMAL(3,1)], 'c': DATE '2024-01-02'}": (
        {"a": 1, "b": [1.5], "c": "2024-01-02"},
        '{"a": 1, "b": [1.5], "c": "2024-01-02"}',
        None,
    ),
    "MAP {'k': 1, 'j': 2}": ({"k": 1, "j": 2}, '{"k": 1, "j": 2}', None),
    "MAP {1: 'x'}": ({"1": "x"}, '{"1": "x"}', None),
    "MAP {DATE '2024-01-02': 'x'}": ({"2024-01-02": "x"}, '{"2024-01-02": "x"}', None),
    "['infinity'::TIMESTAMP, TIMESTAMP '2024-01-02']": (
        ["infinity", "2024-01-02T00:00:00"],
        '["infinity", "2024-01-02T00:00:00"]',
        None,
    ),
    "'nan'::DOUBLE": ("NaN", "NaN", None),
    "'inf'::DOUBLE": ("Infinity", "Infinity", None),
    "'-inf'::FLOAT": ("-Infinity", "-Infinity", None),
    "0.25::DOUBLE": (0.25, "0.25", None),
    "true": (True, "True", None),
    "'a,\"b\"'": ('a,"b"', 'a,"b"', None),
}


@pytest.mark.parametrize("expr", list(CASES))
def test_every_type_prints_in_every_format(capsys, store, expr):
    want_json, want_csv, want_text = CASES[expr]
    sql = f"SELECT {expr} AS v"
    assert _strict(run(capsys, store, sql, "--json")) == [{"v": want_json}]
    assert list(csv.reader(io.StringIO(run(capsys, store, sql, "--csv")))) == [["v"], [want_csv]]
    lines = run(capsys, store, sql).splitlines()
    assert lines[0].strip() == "v" and lines[2].strip() == (want_text or want_csv) and lines[3] == "(1 row)"


def test_time_zones_keep_their_instant(capsys, store):
    sql = "SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00' AS v"
    instant = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    (row,) = _strict(run(capsys, store, sql, "--json"))
    assert dt.datetime.fromisoformat(row["v"]) == instant  # with its offset, whatever the session's zone
    (_, (cell,)) = list(csv.reader(io.StringIO(run(capsys, store, sql, "--csv"))))
    assert dt.datetime.fromisoformat(cell) == instant
    assert dt.datetime.fromisoformat(run(capsys, store, sql).splitlines()[2].strip()) == instant


def test_all_types_in_one_table_and_many_rows(capsys, store):
    """Columns side by side, NULLs between values, and a column whose conversion needs the slow path."""
    sql = (
        "SELECT i, CASE WHEN i % 2 = 0 THEN i::DECIMAL(10,1) / 4 END AS d, "
        "CASE WHEN i = 1 THEN 'infinity'::TIMESTAMP ELSE TIMESTAMP '2024-01-01' + to_days(i::INT) END AS ts, "
        "CASE WHEN i = 2 THEN 'nan'::DOUBLE ELSE i / 3 END AS f FROM range(4) t(i) ORDER BY i"
    )
    rows = _strict(run(capsys, store, sql, "--json"))
    assert [r["d"] for r in rows] == [0, None, 0.5, None]
    assert [r["ts"] for r in rows] == [
        "2024-01-01T00:00:00",
        "infinity",
        "2024-01-03T00:00:00",
        "2024-01-04T00:00:00",
    ]
    assert rows[2]["f"] == "NaN" and rows[3]["f"] == 1.0
    table = list(csv.reader(io.StringIO(run(capsys, store, sql, "--csv"))))
    assert table[0] == ["i", "d", "ts", "f"] and table[2] == ["1", "", "infinity", "0.3333333333333333"]
    text = run(capsys, store, sql)
    assert "infinity" in text and "NaN" in text and "(4 rows)" in text


def test_sum_of_steps_as_json_in_a_real_process(store):
    """The issue's command, `automem query ROOT "select sum(steps) from episodes" --json`, as a user runs it."""
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "query", store, "select sum(steps) from episodes", "--json"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert _strict(res.stdout) == [{"sum(steps)": 5}]


def test_the_rules_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    out = capsys.readouterr().out
    assert "base64" in out and '"NaN"' in out and "DECIMAL" in out
