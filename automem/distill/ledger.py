"""The Loop 2 ledger (issue 15, item 3): one row per evaluation of a trained adapter, kept in the store.

Each ``automem distill eval`` appends ``ledger/<eval id>.parquet`` to the store it read (one file per row, created
exclusively, so concurrent evaluations never overwrite each other): what was evaluated (adapter, base model, the
adapter's lineage: dataset, preset and overrides, train loss), on what (source run, seeds, turns, modes), what it
cost (requests, tokens, seconds) and every metric with its interval (``metrics``: a list of structs, one per mode
and metric). ``automem query ROOT "SELECT ... FROM ledger"`` reads it; ``UNNEST(metrics)`` gives one row per metric.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from automem.trajectory.storage import Storage

LEDGER_DIR = "ledger"

METRIC = pa.struct(
    [
        pa.field("mode", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("base", pa.float64()),
        pa.field("adapter", pa.float64()),
        pa.field("diff", pa.float64()),
        pa.field("lo", pa.float64()),
        pa.field("hi", pa.float64()),
    ]
)

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("eval_id", pa.string()),
        pa.field("created_at", pa.timestamp("ms", tz="UTC")),
        pa.field("adapter", pa.string()),
        pa.field("base_model", pa.string()),
        pa.field("dataset_id", pa.string()),
        pa.field("strategy", pa.string()),
        pa.field("preset", pa.string()),
        pa.field("overrides_json", pa.string()),
        pa.field("train_loss_first", pa.float64()),
        pa.field("train_loss_last", pa.float64()),
        pa.field("val_loss", pa.float64()),
        pa.field("source_run", pa.string()),
        pa.field("seeds", pa.string()),
        pa.field("turns", pa.int64()),
        pa.field("modes", pa.list_(pa.string())),
        pa.field("requests", pa.int64()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("eval_seconds", pa.float64()),
        pa.field("train_seconds", pa.float64()),
        pa.field("metrics", pa.list_(METRIC)),
    ]
)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def ledger_row(
    *,
    adapter: str,
    base_model: str,
    lineage: dict[str, Any] | None,
    source_run: str | None,
    seeds: str | None,
    turns: int,
    modes: list[str],
    comparisons: list[dict[str, Any]],
    cost: dict[str, Any],
) -> dict[str, Any]:
    """One ledger row; ``eval_id`` is derived from everything but the time, so a repeated identical evaluation
    gets the same id (and is not appended twice)."""
    lin = lineage or {}
    config = lin.get("config") or {}
    metrics = lin.get("metrics") or {}
    row: dict[str, Any] = {
        "adapter": adapter,
        "base_model": base_model,
        "dataset_id": lin.get("dataset_id"),
        "strategy": lin.get("strategy"),
        "preset": lin.get("preset"),
        "overrides_json": json.dumps(lin.get("overrides") or {}, sort_keys=True) if lin else None,
        "train_loss_first": _float(metrics.get("first_loss")),
        "train_loss_last": _float(metrics.get("last_loss")),
        "val_loss": _float(metrics.get("eval_loss")),
        "source_run": source_run,
        "seeds": seeds,
        "turns": turns,
        "modes": list(modes),
        "requests": cost.get("requests"),
        "prompt_tokens": cost.get("prompt_tokens"),
        "completion_tokens": cost.get("completion_tokens"),
        "eval_seconds": _float(cost.get("seconds")),
        "train_seconds": _float(metrics.get("train_runtime_s")),
        "metrics": [
            {k: c[k] for k in ("mode", "metric", "base", "adapter", "diff", "lo", "hi")} for c in comparisons
        ],
    }
    if row["preset"] is None and config:
        row["preset"] = config.get("preset")
    blob = json.dumps(
        {k: v for k, v in row.items() if k not in ("eval_seconds",)}, sort_keys=True, default=str
    )
    row["eval_id"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    row["created_at"] = dt.datetime.now(dt.UTC)
    return row


def append(root: str | Storage, row: dict[str, Any]) -> tuple[str, bool]:
    """Write ``row`` as ``<root>/ledger/<eval id>.parquet``; returns (path, written: False if it was there)."""
    st = root if isinstance(root, Storage) else Storage(root)
    table = pa.Table.from_pylist([row], schema=LEDGER_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = st.path(LEDGER_DIR, f"{row['eval_id']}.parquet")
    # The same evaluation again (its id is its content); create_exclusive would count equal bytes as created.
    if st.exists(path):
        return path, False
    st.ensure_dir(st.path(LEDGER_DIR))
    return path, st.create_exclusive(path, buf.getvalue())


def ledger_files(st: Storage) -> list[str]:
    """The ledger's row files in a root (sorted)."""
    base = st.path(LEDGER_DIR)
    return sorted(p for p in st.list_files(base) if p.endswith(".parquet"))


__all__ = ["LEDGER_DIR", "LEDGER_SCHEMA", "append", "ledger_files", "ledger_row"]
