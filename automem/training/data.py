"""The training examples of a Loop 2 dataset: its rows as prompt-completion pairs for TRL.

A dataset folder (``datasets/<id>/``, :mod:`automem.distill.dataset`) is complete only once its ``manifest.json``
exists; its ``rows.parquet`` holds ``messages`` (the JSON chat the agent saw, system prompt first) and
``completion`` (the cleaned target). The prompt is the base model's chat template applied to the messages with
the generation prompt, exactly what the endpoint renders at inference; the completion is the target, to which
TRL appends the end-of-turn token. Loss falls on the completion only (TRL's default for this format).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from automem.distill.dataset import MANIFEST_FILE, ROWS_FILE
from automem.trajectory.storage import Storage


class TrainingError(ValueError):
    """Training cannot start on this input (an incomplete dataset, too few examples, a missing model); one line
    naming the fix."""


@dataclass(frozen=True)
class DatasetRows:
    """A dataset's rows as read for training."""

    dataset_id: str
    """From its manifest."""
    rows: list[dict[str, Any]]
    """``messages`` (parsed: a list of chat messages) and ``completion`` of each row, in file order."""


def read_manifest(dataset: str) -> dict[str, Any]:
    """The ``manifest.json`` of a complete dataset folder (a folder or ``s3://``).

    Raises:
        TrainingError: no manifest (not a dataset, or an unfinished build).
    """
    storage = Storage(dataset, retry_for_s=30.0)
    manifest_path = storage.path(MANIFEST_FILE)
    if not storage.exists(manifest_path):
        raise TrainingError(
            f"{dataset}: not a complete dataset (no {MANIFEST_FILE}); build one with `automem distill dataset`"
        )
    return dict(json.loads(storage.read_bytes(manifest_path)))


def rows_path(dataset: str) -> str:
    """The ``rows.parquet`` of a dataset folder, as a path or URI of the same kind (what Ray Data reads)."""
    return f"{dataset.rstrip('/')}/{ROWS_FILE}"


def parse_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Training rows from ``rows.parquet`` records (``messages`` as JSON text, ``completion``), in their order.

    The one conversion from the file's columns, whichever way they were read (pyarrow here, a Ray Data shard on a
    Ray Train worker).
    """
    return [{"messages": json.loads(r["messages"]), "completion": r["completion"]} for r in records]


def read_rows(dataset: str, *, min_examples: int = 1, force: bool = False) -> DatasetRows:
    """Read a complete dataset folder, refusing one with fewer than ``min_examples`` rows unless ``force``.

    Raises:
        TrainingError: no manifest (not a dataset, or an unfinished build), or too few rows.
    """
    manifest = read_manifest(dataset)
    storage = Storage(dataset, retry_for_s=30.0)
    table = pq.read_table(
        io.BytesIO(storage.read_bytes(storage.path(ROWS_FILE))), columns=["messages", "completion"]
    )
    rows = parse_rows(table.to_pylist())
    if len(rows) < min_examples and not force:
        raise TrainingError(
            f"{dataset}: {len(rows)} examples, below min_examples={min_examples} for this preset; build a larger "
            "dataset (more episodes, a looser --strategy), or pass force=true to train anyway"
        )
    return DatasetRows(str(manifest.get("dataset_id", "")), rows)


def prompt_completion(
    rows: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[list[dict[str, str]], int]:
    """The prompt-completion pairs TRL trains on, and how many rows were dropped for exceeding ``max_length``.

    Rows longer than ``max_length`` tokens (prompt, completion and the end-of-turn token) are dropped rather than
    truncated: TRL cuts the end, which would train the model on completions that stop before ``DONE``.
    """
    examples: list[dict[str, str]] = []
    dropped = 0
    eos = tokenizer.eos_token or ""
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
        length = len(tokenizer(prompt + row["completion"] + eos, add_special_tokens=False)["input_ids"])
        if length > max_length:
            dropped += 1
            continue
        examples.append({"prompt": prompt, "completion": row["completion"]})
    return examples, dropped
