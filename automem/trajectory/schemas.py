"""Arrow schemas of the trajectory store, versioned.

Tables (one folder each under ``<root>/tables/``): ``episodes`` (one row per committed episode), ``steps``,
``turns`` (every LLM call), ``memory_ops`` (the op log: arguments, never file content), ``memory_files`` (final
memory), ``attempts`` (every finished attempt, failed ones with their reason). Memory state at any step is
rebuilt from ``memory_ops`` with ``automem.memory.replay``; it is never snapshotted per step.

``ORIGINS`` says where each column comes from (which dataclass field, or the writer); a test checks it against
these schemas and the dataclasses, so an event field and its column cannot drift apart silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

# 2: one committed file per table per episode (1 had one file per streamed part).
SCHEMA_VERSION = "2"

_KEY = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("attempt", pa.int32(), nullable=False),
]

EPISODES = pa.schema(
    _KEY
    + [
        pa.field("env_id", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("scaffold_id", pa.string()),
        pa.field("scaffold_content_id", pa.string()),
        pa.field("memory_model", pa.string()),
        pa.field("action_model", pa.string()),
        pa.field("status", pa.string()),  # terminated | truncated
        pa.field("progression", pa.float64()),
        pa.field("episode_return", pa.float64()),
        pa.field("steps", pa.int32()),
        pa.field("invalid_actions", pa.int32()),
        pa.field("turns", pa.int32()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("llm_seconds", pa.float64()),
        pa.field("env_seconds", pa.float64()),
        pa.field("wall_seconds", pa.float64()),
        pa.field("op_errors", pa.int32()),
        pa.field("system_prompt", pa.string()),  # the static prefix, stored once per episode
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("committed_at", pa.timestamp("ms", tz="UTC")),
    ]
)

STEPS = pa.schema(
    _KEY
    + [
        pa.field("step", pa.int32()),
        pa.field("observation", pa.string()),
        pa.field("action", pa.string()),
        pa.field("action_index", pa.int32()),
        pa.field("action_text", pa.string()),
        pa.field("action_valid", pa.bool_()),
        pa.field("reward", pa.float64()),
        pa.field("terminated", pa.bool_()),
        pa.field("truncated", pa.bool_()),
        pa.field("progression", pa.float64()),
        pa.field("info_json", pa.string()),
    ]
)

TURNS = pa.schema(
    _KEY
    + [
        pa.field("step", pa.int32()),
        pa.field("phase", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("model", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("prompt_tokens_est", pa.int32()),
        pa.field("prefix_hash", pa.string()),
        pa.field("messages_json", pa.string()),  # the conversation after the system message
        pa.field("completion", pa.string()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("latency_s", pa.float64()),
        pa.field("constraint", pa.string()),
        pa.field("n_ops", pa.int32()),
        pa.field("n_op_errors", pa.int32()),
        pa.field("action", pa.string()),
        pa.field("action_valid", pa.bool_()),
    ]
)

MEMORY_OPS = pa.schema(
    _KEY
    + [
        pa.field("step", pa.int32()),
        pa.field("phase", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("seq", pa.int32()),
        pa.field("op", pa.string()),
        pa.field("args", pa.list_(pa.string())),
        pa.field("ok", pa.bool_()),
        pa.field("read_only", pa.bool_()),
        pa.field("error_kind", pa.string()),
        pa.field("bytes_delta", pa.int64()),
        pa.field("output_chars", pa.int32()),
    ]
)

MEMORY_FILES = pa.schema(
    _KEY
    + [
        pa.field("name", pa.string()),
        pa.field("content", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("lines", pa.int32()),
    ]
)

ATTEMPTS = pa.schema(
    _KEY
    + [
        pa.field("status", pa.string()),  # ok | failed
        pa.field("error", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)

TABLES: dict[str, pa.Schema] = {
    name: schema.with_metadata({"automem.schema_version": SCHEMA_VERSION, "automem.table": name})
    for name, schema in {
        "episodes": EPISODES,
        "steps": STEPS,
        "turns": TURNS,
        "memory_ops": MEMORY_OPS,
        "memory_files": MEMORY_FILES,
        "attempts": ATTEMPTS,
    }.items()
}
# Tables streamed while an episode runs; the others are written once at its end.
STREAMED = ("steps", "turns", "memory_ops")


@dataclass(frozen=True)
class TableOrigin:
    """Where ``EpisodeWriter`` (``automem/trajectory/writer.py``) gets the columns of one table.

    Every column but the key (run_id, episode_id, attempt: the writer's) is named once: copied from the ``source``
    field of the same name, in ``derived``, or in ``given``. ``tests/unit/test_trajectory_schema.py`` checks this
    against the schemas above, the dataclasses and the writer's rows: a dataclass field that no column stores, a
    column that nothing fills, or a copied column whose Arrow type does not fit the field's type fails it.

    Attributes:
        source: ``"module:Class"``, the dataclass whose fields become the columns of the same name; None when the
            writer makes the rows from its own state.
        derived: column -> the ``"Class.field"``s it is computed from (a JSON text, a count, a status, one row
            per item).
        given: column -> ``"meta"`` (the writer's ``meta``: the job's ids and models) or ``"writer"`` (a
            ``commit``/``fail`` argument, the writer's clock).
    """

    source: str | None
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)


ORIGINS: dict[str, TableOrigin] = {
    "episodes": TableOrigin(
        "automem.agent.events:EpisodeEnd",
        derived={"status": ("EpisodeEnd.terminated", "EpisodeEnd.truncated")},
        given={
            # EpisodeEnd carries env_id and seed too; the row takes the job's, from meta.
            "env_id": "meta",
            "seed": "meta",
            "scaffold_id": "meta",
            "scaffold_content_id": "meta",
            "memory_model": "meta",
            "action_model": "meta",
            "system_prompt": "writer",  # commit's argument
            "started_at": "writer",
            "committed_at": "writer",
        },
    ),
    "steps": TableOrigin(
        "automem.agent.events:StepEvent",
        derived={"info_json": ("StepEvent.info",)},
    ),
    "turns": TableOrigin(
        "automem.agent.events:TurnEvent",
        derived={
            "messages_json": ("TurnEvent.messages",),
            # The results themselves are memory_ops rows (OpRecord); a turn keeps their counts.
            "n_ops": ("TurnEvent.results",),
            "n_op_errors": ("TurnEvent.results",),
        },
    ),
    "memory_ops": TableOrigin("automem.memory.results:OpRecord"),
    "memory_files": TableOrigin(
        None,
        derived={
            "name": ("EpisodeEnd.memory_files",),
            "content": ("EpisodeEnd.memory_files",),
            "bytes": ("EpisodeEnd.memory_files",),
            "lines": ("EpisodeEnd.memory_files",),
        },
    ),
    "attempts": TableOrigin(
        None,
        given={
            "status": "writer",
            "error": "writer",
            "worker": "meta",  # or fail's argument
            "started_at": "writer",
            "finished_at": "writer",
        },
    ),
}
