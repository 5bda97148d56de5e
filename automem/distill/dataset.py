"""Build a Loop 2 dataset from a trajectory store: select memory turns, clean them, write them with a manifest.

Layout, in any storage root (a folder or ``s3://``)::

    datasets/<id>/rows.parquet     one row per example (DATASET_SCHEMA plus score_<strategy> columns)
    datasets/<id>/manifest.json    written last: a dataset without one is incomplete and is rebuilt

The id is a hash of the rows and of the selection (``DatasetConfig.selection``), so the same store and
configuration give the same id, wherever the store lies. The funnel counts the turns each stage kept:
``memory_turns`` (committed LOG/PLAN turns read), ``not_held_out``, ``selected`` (passed every strategy; each
strategy's own count under ``by_strategy``), ``with_operations`` (post-processed, non-empty), ``unique`` (exact
duplicates dropped): the rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

import automem
from automem.distill.config import DatasetConfig
from automem.distill.postprocess import postprocess
from automem.distill.strategies import parse_strategy, select
from automem.distill.turns import Source, read_source
from automem.trajectory import Storage, open_store

FORMAT = "1"
DATASETS_DIR = "datasets"
ROWS_FILE = "rows.parquet"
MANIFEST_FILE = "manifest.json"

DATASET_SCHEMA = pa.schema(
    [
        pa.field("messages", pa.string()),  # JSON list of chat messages, the system prompt first
        pa.field("completion", pa.string()),  # the post-processed target
        pa.field("run_id", pa.string()),
        pa.field("episode_id", pa.string()),
        pa.field("attempt", pa.int32()),
        pa.field("step", pa.int32()),
        pa.field("phase", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("env_id", pa.string()),
        pa.field("seed", pa.int64()),
    ]
)


class DistillError(ValueError):
    """A dataset that cannot be built from this input (no committed episodes, an empty selection); one line."""


@dataclass(frozen=True)
class DatasetResult:
    """A built (or already present) dataset."""

    dataset_id: str
    path: str
    """Its folder in the output root."""
    manifest: dict[str, Any]
    existed: bool
    """The same dataset was already complete there; nothing was written."""


def complete_datasets(st: Storage) -> dict[str, str]:
    """The complete datasets in a root: id to the path (on ``st.fs``) of its rows file, by id.

    A dataset is complete when its folder ``datasets/<id>/`` holds a manifest, which the builder writes last; a
    folder without one (a build cut short) is left out. One listing of ``datasets/``; no manifest is read.
    """
    base = st.path(DATASETS_DIR) + "/"
    files = set(st.list_files(st.path(DATASETS_DIR)))
    out = {}
    for path in sorted(files):
        did, _, name = path.removeprefix(base).partition("/")
        rows = f"{base}{did}/{ROWS_FILE}"
        if path.startswith(base) and did and name == MANIFEST_FILE and rows in files:
            out[did] = rows
    return out


def _held_out(source: Source, config: DatasetConfig) -> tuple[Source, int]:
    """``source`` without the episodes of held-out seeds, and how many episodes that left out."""
    seeds = config.held_out()
    if seeds is None:
        return source, 0
    out = {
        k: r
        for k, r in source.episodes.items()
        if r["seed"] is None or not any(r["seed"] in p for p in seeds.parts)
    }
    turns = [t for t in source.turns if t.episode in out]
    ops = {k: v for k, v in source.ops.items() if k in out}
    return Source(turns, out, ops, source.operations), len(source.episodes) - len(out)


def build_rows(source: Source, config: DatasetConfig) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """The dataset's rows and funnel from a source: hold out, select, post-process, dedupe (no I/O).

    Returns:
        The rows (in source order), the funnel, and how many episodes were held out.
    """
    funnel: dict[str, Any] = {"memory_turns": len(source.turns)}
    source, held = _held_out(source, config)
    funnel["not_held_out"] = len(source.turns)
    keep, scores, by_strategy = select(source, config)
    funnel["selected"] = sum(keep)
    funnel["by_strategy"] = by_strategy
    names = parse_strategy(config.strategy)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    with_ops = 0
    for i, t in enumerate(source.turns):
        if not keep[i]:
            continue
        target = postprocess(t.completion, source.enabled(t.key[0], t.phase))
        if target is None:
            continue
        with_ops += 1
        messages = json.dumps(t.messages, ensure_ascii=False, sort_keys=True)
        if config.dedupe:
            if (messages, target) in seen:
                continue
            seen.add((messages, target))
        rec = source.episodes[t.episode]
        run_id, episode_id, attempt, step, phase, turn = t.key
        row = {
            "messages": messages,
            "completion": target,
            "run_id": run_id,
            "episode_id": episode_id,
            "attempt": attempt,
            "step": step,
            "phase": phase,
            "turn": turn,
            "env_id": rec["env_id"],
            "seed": rec["seed"],
        }
        rows.append(row | {f"score_{n}": scores[n][i] for n in names})
    funnel["with_operations"] = with_ops
    funnel["unique"] = len(rows)
    return rows, funnel, held


def content_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of the rows as canonical JSON lines (independent of Parquet's encoding)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def dataset_id(content: str, config: DatasetConfig) -> str:
    """The id: a hash of the content hash and the selection (16 hex digits)."""
    blob = json.dumps({"content": content, "selection": config.selection()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rows_table(rows: list[dict[str, Any]], strategies: list[str]) -> pa.Table:
    """The rows as an Arrow table: ``DATASET_SCHEMA`` then one float64 ``score_<name>`` column per strategy."""
    schema = DATASET_SCHEMA
    for n in strategies:
        schema = schema.append(pa.field(f"score_{n}", pa.float64()))
    return pa.Table.from_pylist(rows, schema=schema)


def build_dataset(config: DatasetConfig, out: str | Storage) -> DatasetResult:
    """Build the dataset ``config`` describes into ``out``'s ``datasets/<id>/``; the manifest is written last.

    Args:
        config: the source store and the selection.
        out: the output root (a folder, ``s3://...``, or a ``Storage``).

    Raises:
        StoreError: the source is not a store.
        DistillError: no committed episodes (in the run), or nothing selected; nothing is written then.
    """
    storage = open_store(config.source)
    source = read_source(storage, config.run_id, config.phases)
    where = config.source + (f" (run {config.run_id})" if config.run_id else "")
    if not source.episodes:
        raise DistillError(f"{where}: no committed episodes to build a dataset from")
    rows, funnel, held = build_rows(source, config)
    if not rows:
        stages = ", ".join(f"{k} {v}" for k, v in funnel.items() if k != "by_strategy")
        raise DistillError(
            f"{where}: the selection is empty ({stages}); try a looser --strategy (wellformed) or another run"
        )
    digest = content_hash(rows)
    did = dataset_id(digest, config)
    st = out if isinstance(out, Storage) else Storage(out)
    folder = st.path(DATASETS_DIR, did)
    manifest_path = f"{folder}/{MANIFEST_FILE}"
    if st.exists(manifest_path):
        existing = json.loads(st.read_bytes(manifest_path))
        if existing.get("content_hash") == digest:
            return DatasetResult(did, folder, existing, existed=True)
    strategies = parse_strategy(config.strategy)
    table = rows_table(rows, strategies)
    manifest = {
        "dataset_id": did,
        "format": FORMAT,
        "sources": [{"root": config.source, "run_ids": sorted({k[0] for k in source.episodes})}],
        "strategy": config.strategy,
        "parameters": config.selection(),
        "holdout_seeds": config.holdout_seeds,
        "held_out_episodes": held,
        "funnel": funnel,
        "rows": table.num_rows,
        "files": [ROWS_FILE],
        "columns": table.schema.names,
        "content_hash": digest,
        "automem_version": automem.__version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    st.write_table(f"{folder}/{ROWS_FILE}", table)
    # Last: a folder without a manifest is an unfinished build, never a dataset.
    st.write_bytes(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return DatasetResult(did, folder, manifest, existed=False)
