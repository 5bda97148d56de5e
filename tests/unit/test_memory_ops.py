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


def test_number_arguments_are_ascii_digits_of_bounded_length(store):
    run1(store, "APPEND n.md one")
    # '²' and '³' pass str.isdigit() but int() refuses them; 5,000 digits exceed Python's int-string limit.
    for line in ("READ n.md ² ²", "TAIL n.md ³", "READ n.md 1 " + "9" * 5000, "TAIL n.md ٣", "TAIL n.md 1e3"):
        result = run1(store, line)
        assert not result.ok and result.error_kind == "bad_args", (line[:40], result.to_json())
    assert store.run_op("TAIL", ["n.md", "9" * 5000]).error_kind == "bad_args"
    assert run1(store, "READ n.md 1 999999999").output == "one"  # nine digits is a number
    assert run1(store, "TAIL n.md 007").output == "one"


def test_free_text_is_the_rest_of_the_line_verbatim():
    # Quotes and backslashes inside a text are plain text; the grammar allows them, so the parser must too.
    (op,) = parse('APPEND notes.md a "b\nDONE')
    assert (op.op, op.args) == ("APPEND", ["notes.md", 'a "b'])
    (op,) = parse('WRITE notes.md x "y\\q"\nDONE')
    assert op.args == ["notes.md", 'x "y\\q"']
    (op,) = parse('UPSERT s.md "two words" say "hi" \\o/')
    assert op.args == ["s.md", "two words", 'say "hi" \\o/']
    (op,) = parse('REPLACE s.md old new "text')
    assert op.args == ["s.md", "old", 'new "text']
    # One whole JSON string is still unquoted (how a model writes several lines), and an opening quote that
    # never closes is refused as before.
    (op,) = parse('WRITE a.md "l1\\nl2"')
    assert op.args == ["a.md", "l1\nl2"]
    (bad,) = parse('APPEND a.md "unterminated')
    assert bad.error_kind == "parse"


def test_lines_are_separated_by_newline_only(store):
    # \v, \f, \x1c, \x85, \u2028, \u2029 and \r are characters inside a line, for every operation alike.
    odd = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g\rh"
    assert store.run_op("WRITE", ["o.md", f"{odd}\nsecond iron\nthird {odd}"]).ok
    assert store.index["o.md"].lines == 3
    assert run1(store, "READ o.md 2 2").output == "second iron"
    assert run1(store, "READ o.md 3 3").output == f"third {odd}"
    assert run1(store, "TAIL o.md 1").output == f"third {odd}"
    assert run1(store, "TAIL o.md 2").output == f"second iron\nthird {odd}"
    assert run1(store, "SEARCH iron o.md").output == "o.md:2: second iron"
    assert run1(store, "SEARCH g\rh o.md").output == f"o.md:1: {odd}\no.md:3: third {odd}"
    assert run1(store, "COUNT o.md f\u2029g").output == "2"
    assert run1(store, "LIST").output == f"o.md (3 lines, {store.index['o.md'].bytes} bytes)"
    # UPSERT rewrites only the line of its key, and no other character.
    before = store.backend.read("o.md")
    assert run1(store, "UPSERT o.md hp 9").ok
    assert store.backend.read("o.md") == before + "hp: 9\n"
    assert run1(store, "UPSERT o.md hp 8").ok
    assert store.backend.read("o.md") == before + "hp: 8\n"


def test_upsert_keys_have_no_control_characters(store):
    run1(store, "CREATE n.md")
    for key in ("k\x00", "k\x01", "a\tb", "k\x85", "k\nv", "a:b"):
        result = store.run_op("UPSERT", ["n.md", key, "v"])
        assert result.error_kind == "bad_args", repr(key)
    assert store.backend.read("n.md") == ""
    assert store.run_op("UPSERT", ["n.md", "hp", "9"]).ok


def test_parser_tolerates_tabs_and_markdown_around_operations():
    parsed = parse(
        "READ\tnotes.md\nTAIL \t notes.md\t3\n**LIST**\n**APPEND** notes.md bold op\n`LIST`:\n**DONE**"
    )
    assert [(p.op, p.args) for p in parsed] == [
        ("READ", ["notes.md"]),
        ("TAIL", ["notes.md", "3"]),
        ("LIST", []),
        ("APPEND", ["notes.md", "bold op"]),
        ("LIST", []),
    ]
    # A name with a character that str.isspace() counts as a blank (U+0085) is not split there.
    (op,) = parse("READ \x85x.md")
    assert op.args == ["\x85x.md"]
    (err,) = parse("LIST a b")
    assert err.error.count("usage:") == 1 and err.error.endswith("usage: LIST")


def test_help_states_what_the_operations_do():
    text = render_help()
    lines = {line.split(" — ")[0].split()[0]: line for line in text.splitlines()}
    assert "READ file [start end] — " in text  # both or neither: READ a.md 2 is refused
    for op in ("COUNT", "SEARCH"):
        assert "literal" in lines[op] and "not a regex" in lines[op]
    for op in ("READ", "TAIL", "COUNT", "REPLACE", "UPSERT", "DELETE"):
        assert "error if the file is missing" in lines[op] or "error if it is missing" in lines[op], op
    assert "old is absent" in lines["REPLACE"]


def test_json_mode_names_unknown_ops_null_and_refuses_deep_nesting():
    parsed = parse_json(
        json.dumps(
            [
                {"op": "FOO", "args": 5},
                {"op": "FOO", "args": []},
                {"op": "read", "args": 5},
                {"op": 5},
                {"op": "TAIL", "args": ["a.md", 3]},
            ]
        )
    )
    assert parsed[0].op is None and parsed[0].error_kind == "parse"
    assert parsed[1].op == "FOO"  # runs as an unknown operation: op null in its result (below)
    assert parsed[2].op == "READ" and parsed[2].error_kind == "parse"
    assert parsed[3].op is None
    assert parsed[4].args == ["a.md", "3"]
    store = MemoryStore.in_memory()
    results = run_text.__globals__["execute"](store, parsed)
    assert [r.to_json()["op"] for r in results[:2]] == [None, None]
    # A huge integer is kept as its digits (int() of it would raise), then refused by the operation.
    (big,) = parse_json('[{"op": "TAIL", "args": ["a.md", ' + "9" * 5000 + "]}]")
    assert big.args[1] == "9" * 5000
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)
