"""Small Loop 2 datasets for the training tests, written in the documented layout (``automem.distill.dataset``):
``datasets/<id>/rows.parquet`` (``messages`` as JSON text, ``completion``, the source keys) then ``manifest.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from automem.distill.dataset import MANIFEST_FILE, ROWS_FILE, rows_table

SYSTEM = "You keep memory files for a game agent. Answer with memory operations, one per line, then DONE."


def memory_rows(n: int) -> list[dict]:
    """``n`` LOG turns: a short observation and the completion that records it (the same pattern each time)."""
    things = ["tree", "water", "stone", "cow", "zombie", "table", "sapling", "coal"]
    rows = []
    for i in range(n):
        thing, side = things[i % len(things)], ["north", "south", "east", "west"][i % 4]
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Step {i}. You see a {thing} to the {side}. Phase: LOG."},
        ]
        rows.append(
            {
                "messages": json.dumps(messages, sort_keys=True),
                "completion": f"APPEND notes.md {thing} seen to the {side} at step {i}\nDONE",
                "run_id": "r1",
                "episode_id": "e0",
                "attempt": 1,
                "step": i,
                "phase": "log",
                "turn": 0,
                "env_id": "crafter-v0",
                "seed": 0,
            }
        )
    return rows


def write_dataset(root: Path, n: int, dataset_id: str = "test0000", *, manifest: bool = True) -> Path:
    """Write a dataset of ``n`` rows under ``root/datasets/<dataset_id>/``; return its folder."""
    folder = root / "datasets" / dataset_id
    folder.mkdir(parents=True)
    pq.write_table(rows_table(memory_rows(n), []), folder / ROWS_FILE)
    if manifest:
        (folder / MANIFEST_FILE).write_text(json.dumps({"dataset_id": dataset_id, "rows": n}))
    return folder
