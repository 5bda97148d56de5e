# Run: .venv/bin/python -m pytest tests/unit/test_memory_ops.py
"""Semantics of every memory operation, as documented in automem/memory/ops.py."""

from __future__ import annotations

import json

import pytest

from automem.memory import MemoryStore, OpLog, Quotas, parse, parse_json, render_help, replay, run_text


@pytest.fixture
def store(tmp_path):
    return MemoryStore.open_dir(tmp_path / "mem", Quotas(max_ops_per_turn=50))


def run1(store, line):
    (result,) = run_text(store, line)
    return result


def test_read_is_one_based_and_inclusive(store):
    run1(store, 'WRITE a.md "l1\\nl2\\nl3\\nl4"')
    assert run1(store, "READ a.md 2 3").output == "l2\nl3"
    assert run1(store, "READ a.md").output == "l1\nl2\nl3\nl4"
    assert run1(store, "READ a.md 4 9").output == "l4"
    assert run1(store, "READ a.md 3 2").error_kind == "bad_args"
    assert run1(store, "READ a.md 2").error_kind == "bad_args"
    assert run1(store, "READ a.md 0 2").error_kind == "bad_args"


def test_tail_count_search(store):
    run1(store, 'WRITE a.md "Tree north\\nwater east\\nTREE west"')
    run1(store, "APPEND b.md a tree here")
    assert run1(store, "TAIL a.md 2").output == "water east\nTREE west"
    assert run1(store, "TAIL a.md").output == "Tree north\nwater east\nTREE west"
    assert run1(store, "COUNT a.md tree").output == "2"
    assert run1(store, "COUNT a.md lava").output == "0"
    assert run1(store, "SEARCH tree *").output == "a.md:1: Tree north\na.md:3: TREE west\nb.md:1: a tree here"
    assert run1(store, "SEARCH tree b.md").output == "b.md:1: a tree here"
    assert run1(store, 'SEARCH "water east" a.md').output == "a.md:2: water east"
    empty = run1(store, "SEARCH lava *")
    assert empty.ok and empty.output == ""
    # Patterns are literal, not regexes.
    assert run1(store, "SEARCH t.ee *").output == ""


def test_create_write_append(store):
    assert run1(store, "CREATE n.md").ok
    assert run1(store, "CREATE n.md").error_kind == "exists"
    assert run1(store, "APPEND n.md first").ok
    assert run1(store, "APPEND n.md second").ok
    assert run1(store, "READ n.md").output == "first\nsecond"
    assert run1(store, "WRITE n.md replaced").ok
    assert run1(store, "READ n.md").output == "replaced"
    assert run1(store, "APPEND new.md made by append").ok  # APPEND creates
    assert run1(store, "WRITE dir/deep.md nested").ok  # nested names create folders
    assert store.index["dir/deep.md"].lines == 1


def test_upsert_replace_delete(store):
    assert run1(store, "UPSERT s.md hp 9").error_kind == "missing"
    run1(store, "CREATE s.md")
    run1(store, "UPSERT s.md hp 9")
    run1(store, "UPSERT s.md food 3")
    run1(store, "UPSERT s.md HP 7")  # keys match case-insensitively
    assert run1(store, "READ s.md").output == "HP: 7\nfood: 3"
    assert run1(store, "UPSERT s.md a:b x").error_kind == "bad_args"
    assert run1(store, "REPLACE s.md 7 8").ok
    assert run1(store, "REPLACE s.md zzz 8").error_kind == "not_found"
    run1(store, 'WRITE r.md "x x\\nx"')
    result = run1(store, "REPLACE r.md x y")
    assert result.output == "replaced 3 in r.md"
    assert run1(store, "READ r.md").output == "y y\ny"
    assert run1(store, "DELETE r.md").ok
    assert run1(store, "DELETE r.md").error_kind == "missing"
    for op in ("READ", "TAIL", "DELETE"):
        assert run1(store, f"{op} nope.md").error_kind == "missing"
    assert run1(store, "COUNT nope.md x").error_kind == "missing"


def test_list_and_index_are_incremental(store):
    assert run1(store, "LIST").output == ""
    run1(store, "APPEND a.md one")
    run1(store, "APPEND a.md two")
    assert run1(store, "LIST").output == "a.md (2 lines, 8 bytes)"
    # The index equals a fresh scan of the directory.
    rescanned = MemoryStore.open_dir(store.backend.root)
    assert rescanned.index == store.index


def test_output_is_truncated_with_a_marker(tmp_path):
    store = MemoryStore.open_dir(tmp_path, Quotas(max_output_chars=64, max_ops_per_turn=50))
    for i in range(20):
        run1(store, f"APPEND a.md line number {i}")
    result = run1(store, "READ a.md")
    assert result.ok and result.cut_chars > 0
    assert result.output.endswith(f"[{result.cut_chars} more characters cut]")
    assert len(result.output) < 64 + 40


def test_operations_run_in_the_order_written(store):
    # The reference implementation grouped operations by type; order matters: READ sees the APPEND before it
    # and not the WRITE after it.
    results = run_text(store, "APPEND a.md one\nREAD a.md\nWRITE a.md two\nREAD a.md\nDONE")
    assert [r.output for r in results if r.op == "READ"] == ["one", "two"]


def test_parser_tolerates_what_small_models_write():
    text = "```\n  append NOTES.md  hello world  \n- search tree *\n1. TAIL notes.md 3\n```\n`LIST`\ndone\nAPPEND x.md after"
    parsed = parse(text)
    assert [(p.op, p.args) for p in parsed] == [
        ("APPEND", ["NOTES.md", "hello world"]),
        ("SEARCH", ["tree", "*"]),
        ("TAIL", ["notes.md", "3"]),
        ("LIST", []),
    ]
    # Several operations in one message, and no end marker at the end of the text.
    assert len(parse("READ a.md\nREAD b.md")) == 2


def test_unparseable_fragments_become_error_results():
    parsed = parse('I think I should write a note.\nAPPEND a.md ok\nREAD "unterminated\nFLY a.md')
    kinds = [getattr(p, "error_kind", None) for p in parsed]
    assert kinds == ["parse", None, "parse", "unknown_op"]
    assert all("DONE" in p.error for p in parsed if getattr(p, "error_kind", None) in ("unknown_op",))


def test_json_mode_and_results_name_ops_in_upper_case(store):
    parsed = parse_json(
        json.dumps([{"op": "append", "args": ["a.md", "x y"]}, {"op": "read", "args": ["a.md"]}])
    )
    out = [r.to_json() for r in run_text.__globals__["execute"](store, parsed)]
    assert [o["op"] for o in out] == ["APPEND", "READ"]
    assert out[1]["output"] == "x y"
    with pytest.raises(ValueError):
        parse_json('{"op": "READ"}')


def test_replay_rebuilds_each_step(tmp_path):
    log = OpLog()
    store = MemoryStore.open_dir(tmp_path, Quotas(max_ops_per_turn=50), on_record=log.append)
    from automem.memory import execute

    execute(store, parse("APPEND a.md one\nCREATE b.md"), step=0, phase="log")
    execute(store, parse("APPEND a.md two\nREAD a.md\nAPPEND ../x.md bad"), step=1, phase="log")
    execute(store, parse("DELETE b.md\nWRITE a.md three"), step=2, phase="log")
    assert replay(log, upto_step=0) == {"a.md": "one\n", "b.md": ""}
    assert replay(log, upto_step=1) == {"a.md": "one\ntwo\n", "b.md": ""}
    assert replay(log) == {"a.md": "three\n"}
    # Records carry arguments, never file content.
    assert all("three\n" not in rec.args for rec in log)
    assert replay([r.to_dict() for r in log]) == replay(log)


def test_help_text_documents_the_semantics():
    text = render_help()
    for needle in (
        "1-based, inclusive",
        "case-insensitive",
        "error if it exists",
        "creates",
        "every occurrence",
    ):
        assert needle in text
