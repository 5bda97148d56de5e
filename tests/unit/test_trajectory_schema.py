# Run: .venv/bin/python -m pytest tests/unit/test_trajectory_schema.py
"""The Arrow schemas, the agent's event dataclasses and the writer's rows agree, column by column.

``automem.trajectory.schemas.ORIGINS`` names where each column comes from; these tests fail when a dataclass
field has no column (a field added to an event for training, say), a column has no source, a copied column's type
does not fit its field, or the writer's rows leave a column out.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.memory.results import OpRecord
from automem.trajectory import EpisodeWriter, Storage
from automem.trajectory.schemas import ORIGINS, TABLES

KEY = ("run_id", "episode_id", "attempt")
SCHEMAS = "automem/trajectory/schemas.py"
WRITER = "automem/trajectory/writer.py"


def resolve(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


SOURCES: dict[str, type] = {o.source: resolve(o.source) for o in ORIGINS.values() if o.source}
BY_NAME: dict[str, type] = {cls.__name__: cls for cls in SOURCES.values()}


def where(cls: type) -> str:
    return f"{cls.__module__.replace('.', '/')}.py"


def copied(table: str) -> list[str]:
    """The columns of ``table`` copied from its source's field of the same name."""
    origin = ORIGINS[table]
    if origin.source is None:
        return []
    names = {f.name for f in dataclasses.fields(SOURCES[origin.source])}
    return [
        c
        for c in TABLES[table].names
        if c in names and c not in KEY and c not in origin.derived and c not in origin.given
    ]


def test_the_events_the_writer_takes_are_the_declared_sources():
    assert set(SOURCES.values()) == {EpisodeEnd, StepEvent, TurnEvent, OpRecord}


def test_every_table_has_its_origins():
    assert set(ORIGINS) == set(TABLES), f"name each table's origins in ORIGINS ({SCHEMAS})"


def test_every_column_has_a_source():
    problems = []
    for table, schema in TABLES.items():
        origin = ORIGINS[table]
        names = {f.name for f in dataclasses.fields(SOURCES[origin.source])} if origin.source else set()
        for col in schema.names:
            declared = [col in KEY, col in origin.derived, col in origin.given, col in names]
            if not any(declared):
                problems.append(
                    f"{table}.{col}: no field of the same name in {origin.source}, not in derived/given"
                )
            elif col in KEY and any(declared[1:3]):
                problems.append(f"{table}.{col}: a key column, also declared derived or given")
            elif col in origin.derived and col in origin.given:
                problems.append(f"{table}.{col}: both derived and given")
        for col in [*origin.derived, *origin.given]:
            if col not in schema.names:
                problems.append(f"{table}.{col}: declared in ORIGINS but not a column of the schema")
        for col, value in origin.given.items():
            if value not in ("meta", "writer"):
                problems.append(f"{table}.{col}: given from {value!r}, not 'meta' or 'writer'")
    assert not problems, f"fix the schema or ORIGINS in {SCHEMAS}:\n" + "\n".join(problems)


def test_every_derived_column_names_real_fields():
    problems = []
    for table, origin in ORIGINS.items():
        for col, refs in origin.derived.items():
            if not refs:
                problems.append(f"{table}.{col}: derived from nothing")
            for ref in refs:
                cls_name, _, name = ref.partition(".")
                cls = BY_NAME.get(cls_name)
                if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
                    problems.append(f"{table}.{col}: derived from {ref}, which is not a field of a source")
    assert not problems, f"fix ORIGINS in {SCHEMAS}:\n" + "\n".join(problems)


def test_every_event_field_is_stored():
    """A field added to an event (token log-probabilities, say) needs a column, or a line in ORIGINS saying which
    column it is computed into."""
    stored: dict[type, set[str]] = {cls: set() for cls in SOURCES.values()}
    for table, origin in ORIGINS.items():
        if origin.source:
            stored[SOURCES[origin.source]] |= set(TABLES[table].names)
        for refs in origin.derived.values():
            for ref in refs:
                cls_name, _, name = ref.partition(".")
                if cls_name in BY_NAME:
                    stored[BY_NAME[cls_name]].add(name)
    missing = [
        f"{cls.__name__}.{f.name} ({where(cls)})"
        for cls, names in stored.items()
        for f in dataclasses.fields(cls)
        if f.name not in names
    ]
    assert not missing, (
        "event fields the trajectory store does not keep:\n  "
        + "\n  ".join(missing)
        + f"\nadd a column of the same name to the table's schema in {SCHEMAS} and fill it in EpisodeWriter "
        f"({WRITER}), or, if the field is stored computed (JSON text, a count), add the column to the table's "
        f"ORIGINS[...].derived in {SCHEMAS}"
    )


def _fits(hint: Any, typ: pa.DataType) -> bool:
    """Whether values of the Python type ``hint`` go into an Arrow column of type ``typ``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(args) == 1 and _fits(args[0], typ)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        item = typing.get_args(hint)[0]
        return pa.types.is_list(typ) and _fits(item, typ.value_type)
    checks = {
        bool: pa.types.is_boolean,
        int: pa.types.is_integer,
        float: pa.types.is_floating,
        str: pa.types.is_string,
    }
    return hint in checks and checks[hint](typ)


def test_copied_columns_fit_their_fields_types():
    problems = []
    for table, origin in ORIGINS.items():
        if origin.source is None:
            continue
        cls = SOURCES[origin.source]
        hints = typing.get_type_hints(cls)
        for col in copied(table):
            typ = TABLES[table].field(col).type
            if not _fits(hints[col], typ):
                problems.append(f"{table}.{col} is {typ}, {cls.__name__}.{col} is {hints[col]}")
    assert not problems, f"make the column types in {SCHEMAS} fit the fields:\n" + "\n".join(problems)


# -- the writer's rows ------------------------------------------------------------------------------------------

# Values for fields whose type alone does not say what the writer expects of them.
SPECIAL: dict[str, Any] = {
    "results": [{"op": "READ", "ok": True}, {"op": None, "ok": False}],
    "messages": [{"role": "user", "content": "hello"}],
    "info": {"achievements": 2},
    "memory_files": {"notes.md": "one\ntwo\n"},
}


def sample(cls: type, episode_id: str = "ep-1") -> Any:
    """An instance of ``cls`` with a distinct value in every field, so a column filled from the wrong field shows."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls), start=1):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if f.name == "episode_id":
            values[f.name] = episode_id
        elif f.name in SPECIAL:
            values[f.name] = SPECIAL[f.name]
        elif hint is bool:
            values[f.name] = i % 2 == 0
        elif hint is int:
            values[f.name] = i
        elif hint is float:
            values[f.name] = i + 0.5
        elif hint is str:
            values[f.name] = f"{f.name}-{i}"
        elif typing.get_origin(hint) in (list, tuple):
            values[f.name] = typing.get_origin(hint)([f"{f.name}-{i}"])
        else:
            pytest.fail(f"no sample value for {cls.__name__}.{f.name}: {hint}; add one to SPECIAL")
    return cls(**values)


@pytest.mark.parametrize("cls", [EpisodeEnd, StepEvent, TurnEvent, OpRecord])
def test_to_dict_has_every_field(cls):
    """OpRecord.to_dict is written by hand (and the writer stores what it returns)."""
    assert set(sample(cls).to_dict()) == {f.name for f in dataclasses.fields(cls)}, (
        f"{cls.__name__}.to_dict ({where(cls)}) must return every field"
    )


META = {
    "env_id": "meta-env",
    "seed": 7,
    "scaffold_id": "s",
    "scaffold_content_id": "c",
    "memory_model": "mm",
    "action_model": "am",
    "worker": "host:1",
}


def test_the_writer_fills_every_column_of_the_streamed_tables(tmp_path):
    writer = EpisodeWriter(Storage(str(tmp_path)), "run1", "ep-1", 1, META)
    events = {"steps": sample(StepEvent), "turns": sample(TurnEvent), "memory_ops": sample(OpRecord)}
    for event in events.values():
        writer.on_event(event)
    rows = writer.take()
    for table, event in events.items():
        (row,) = rows[table]
        assert set(row) == set(TABLES[table].names), (
            f"EpisodeWriter.on_event ({WRITER}) makes {table} rows with {sorted(set(row) ^ set(TABLES[table].names))} "
            f"differing from the schema's columns ({SCHEMAS})"
        )
        for col in copied(table):
            want = getattr(event, col)
            assert row[col] == (list(want) if isinstance(want, tuple) else want), f"{table}.{col}"
        pa.Table.from_pylist([row], schema=TABLES[table])  # and the values fit the types


def test_the_writer_fills_every_column_of_the_committed_tables(tmp_path):
    storage = Storage(str(tmp_path))
    writer = EpisodeWriter(storage, "run1", "ep-1", 1, META)
    end = sample(EpisodeEnd)
    writer.commit(end, "the system prompt")
    record = writer.committed_record()
    assert record is not None
    assert [c for c in TABLES["episodes"].names if record[c] is None] == []
    for col in copied("episodes"):
        assert record[col] == getattr(end, col), col
    for col, value in ORIGINS["episodes"].given.items():
        if value == "meta":
            assert record[col] == META[col], col
    files = storage.list_files(storage.path("tables", "memory_files"))
    assert len(files) == 1
    (row,) = pq.read_table(files[0]).to_pylist()
    assert row["name"] == "notes.md" and row["content"] == "one\ntwo\n"
    assert [c for c in TABLES["memory_files"].names if row[c] is None] == []
