"""The Loop 1 lineage: one row per candidate scaffold an evolve run considered, kept in the store.

Each row is ``lineage/<evolve name>-<iteration>.parquet`` (created exclusively, so a resumed or concurrent run never
overwrites a decision): which scaffold it revised (``parent_content_id``), the patch, the reviewer and its
rationale, the digest's size, the gate's statistics and the decision. Iteration 0 is the starting scaffold (the
tree's root, decision ``start``). ``automem query ROOT "SELECT * FROM lineage"`` reads it, and the HTML report draws
it as a tree.

Decisions: ``start``; ``accepted`` / ``rejected`` (the gate's verdict); ``invalid_patch`` (refused before any
episode, ``reject_kind`` says why); ``reviewer_error`` (timeout, unreachable, garbage); ``no_proposal`` (the reviewer
had nothing new); ``duplicate`` (a scaffold already gated).
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from automem.trajectory.storage import Storage

LINEAGE_DIR = "lineage"
DECISIONS = ("start", "accepted", "rejected", "invalid_patch", "reviewer_error", "no_proposal", "duplicate")

LINEAGE_SCHEMA = pa.schema(
    [
        pa.field("evolve", pa.string()),
        pa.field("iteration", pa.int32()),
        pa.field("created_at", pa.timestamp("ms", tz="UTC")),
        pa.field("decision", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("reject_kind", pa.string()),
        pa.field("scaffold_id", pa.string()),
        pa.field("content_id", pa.string()),
        pa.field("parent_content_id", pa.string()),
        pa.field("parent_scaffold_id", pa.string()),
        pa.field("reviewer", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("rationale", pa.string()),
        pa.field("patch_json", pa.string()),
        pa.field("diff", pa.string()),
        pa.field("scaffold_yaml", pa.string()),
        pa.field("digest_tokens", pa.int32()),
        pa.field("digest_budget", pa.int32()),
        pa.field("reviewer_seconds", pa.float64()),
        pa.field("metric", pa.string()),
        pa.field("seeds", pa.string()),
        pa.field("n_seeds", pa.int32()),
        pa.field("parent_run", pa.string()),
        pa.field("candidate_run", pa.string()),
        pa.field("parent_mean", pa.float64()),
        pa.field("candidate_mean", pa.float64()),
        pa.field("mean_diff", pa.float64()),
        pa.field("lower", pa.float64()),
        pa.field("upper", pa.float64()),
        pa.field("p_value", pa.float64()),
        pa.field("margin", pa.float64()),
        pa.field("level", pa.float64()),
        pa.field("op_error_rate_diff", pa.float64()),
        pa.field("op_error_rate_lo", pa.float64()),
        pa.field("op_error_rate_hi", pa.float64()),
        pa.field("redundant_write_rate_diff", pa.float64()),
        pa.field("redundant_write_rate_lo", pa.float64()),
        pa.field("redundant_write_rate_hi", pa.float64()),
        pa.field("current_content_id", pa.string()),
    ]
)
"""``current_content_id`` is the scaffold in force after this iteration (the candidate if accepted)."""


def row_path(st: Storage, evolve: str, iteration: int) -> str:
    return st.path(LINEAGE_DIR, f"{evolve}-{iteration:04d}.parquet")


def append_row(st: Storage, row: dict[str, Any]) -> bool:
    """Write one lineage row; False if this evolve run's iteration already has one (kept as it is)."""
    assert row["decision"] in DECISIONS, row["decision"]
    row = {**row, "created_at": row.get("created_at") or dt.datetime.now(dt.UTC)}
    path = row_path(st, row["evolve"], row["iteration"])
    if st.exists(path):
        return False
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=LINEAGE_SCHEMA), buf)
    st.ensure_dir(st.path(LINEAGE_DIR))
    return st.create_exclusive(path, buf.getvalue())


def lineage_files(st: Storage, evolve: str | None = None) -> list[str]:
    """The lineage row files in a root (sorted; one evolve run's when ``evolve`` is given)."""
    files = sorted(p for p in st.list_files(st.path(LINEAGE_DIR)) if p.endswith(".parquet"))
    if evolve is not None:
        files = [p for p in files if p.rsplit("/", 1)[-1].rsplit("-", 1)[0] == evolve]
    return files


def read_rows(st: Storage, evolve: str) -> list[dict[str, Any]]:
    """One evolve run's rows, by iteration."""
    rows = [pq.read_table(io.BytesIO(st.read_bytes(p))).to_pylist()[0] for p in lineage_files(st, evolve)]
    return sorted(rows, key=lambda r: r["iteration"])


__all__ = [
    "DECISIONS",
    "LINEAGE_DIR",
    "LINEAGE_SCHEMA",
    "append_row",
    "lineage_files",
    "read_rows",
    "row_path",
]
