# Run: .venv/bin/python -m pytest tests/unit/test_memory_properties.py
"""Property tests: replay equals the live state; the grammar and the parser agree."""

from __future__ import annotations

import json
import re
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from automem.memory import ALL_OPS, MemoryStore, OpLog, OpResult, Quotas, execute, parse, replay, turn_regex
from automem.memory.ops import REGISTRY
from automem.scaffold import load

NAMES = ["a.md", "b.md", "d/c.md"]
texts = st.text(alphabet="abc xyz:\n", min_size=0, max_size=12)
words = st.text(alphabet="abcxyz", min_size=1, max_size=4)
ints = st.integers(min_value=0, max_value=6).map(str)
ops = st.one_of(
    st.tuples(st.just("LIST")),
    st.tuples(st.just("READ"), st.sampled_from(NAMES), ints, ints),
    st.tuples(st.just("TAIL"), st.sampled_from(NAMES), ints),
    st.tuples(st.just("SEARCH"), words, st.sampled_from(NAMES + ["*"])),
    st.tuples(st.just("COUNT"), st.sampled_from(NAMES), words),
    st.tuples(st.just("CREATE"), st.sampled_from(NAMES)),
    st.tuples(st.just("WRITE"), st.sampled_from(NAMES), texts),
    st.tuples(st.just("APPEND"), st.sampled_from(NAMES), texts),
    st.tuples(st.just("UPSERT"), st.sampled_from(NAMES), words, texts),
    st.tuples(st.just("REPLACE"), st.sampled_from(NAMES), words, texts),
    st.tuples(st.just("DELETE"), st.sampled_from(NAMES)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.lists(ops, max_size=5), min_size=1, max_size=8), quota=st.integers(20, 200))
def test_replay_equals_live_state(steps, quota):
    """Random operation sequences (many failing) on a real directory; replay of the log equals it at each step."""
    from automem.memory.grammar import ParsedOp

    with tempfile.TemporaryDirectory() as tmp:
        log = OpLog()
        store = MemoryStore.open_dir(
            tmp, Quotas(max_file_bytes=quota, max_total_bytes=quota * 2), on_record=log.append
        )
        states = []
        for t, step_ops in enumerate(steps):
            parsed = [ParsedOp(o[0], list(o[1:]), raw="") for o in step_ops]
            execute(store, parsed, step=t, phase="log")
            states.append({n: store.backend.read(n) for n in store.index})
        for t, state in enumerate(states):
            assert replay(log, upto_step=t) == state
        # The incremental index agrees with a rescan.
        assert MemoryStore.open_dir(tmp).index == store.index


def _grammar():
    scaffold = load("crafter-v0")
    return turn_regex(scaffold.operations, scaffold.file_names, max_ops=4, max_text_chars=60)


GRAMMAR = _grammar()


# Strings the audit found the grammar allowed and the parser refused: a quote or backslash inside a free text.
GRAMMAR_EXAMPLES = [
    'APPEND notes.md a "b\nDONE',
    'WRITE notes.md x "y\\q"\nDONE',
    'UPSERT state.md k v "\\u\nDONE',
]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(GRAMMAR, fullmatch=True))
@example(GRAMMAR_EXAMPLES[0])
@example(GRAMMAR_EXAMPLES[1])
@example(GRAMMAR_EXAMPLES[2])
def test_every_grammar_string_parses_without_error(text):
    assert re.fullmatch(GRAMMAR, text)
    parsed = parse(text)
    errors = [p for p in parsed if not hasattr(p, "args") or getattr(p, "ok", True) is False]
    assert not errors, (text, [e.to_json() for e in errors])
    assert len(parsed) == text.count("\n")
    for p in parsed:  # and every one has the argument count its operation takes
        REGISTRY[p.op].coerce(p.args)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(turn_regex(list(ALL_OPS), ["notes.md"], max_ops=3, max_text_chars=40), fullmatch=True))
def test_every_string_of_the_full_grammar_parses(text):
    assert all(hasattr(p, "args") for p in parse(text))


# from_regex rarely puts a quote or a backslash in a text (1 character in 95, in short texts), so this builds
# turns from the grammar's pieces with such characters mixed in, and checks each text comes back verbatim.
_FILES = st.sampled_from(load("crafter-v0").file_names)
_WORD = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
_KEY = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
_NASTY = st.sampled_from(['"', "\\", "\\q", '"\\u', '" "', '\\"', '"a"', "\\n", "'", "`", "**", ": ", "  "])
_TEXT = st.tuples(
    st.from_regex(r"[!#-~]", fullmatch=True),
    st.lists(st.one_of(_NASTY, st.from_regex(r"[ -~]{0,6}", fullmatch=True)), max_size=8),
).map(lambda t: (t[0] + "".join(t[1]))[:60])
_LINE = st.one_of(
    st.tuples(st.sampled_from(["WRITE", "APPEND"]), _FILES, _TEXT).map(lambda t: (t[0], [t[1], t[2]])),
    st.tuples(st.just("UPSERT"), _FILES, _KEY, _TEXT).map(lambda t: (t[0], list(t[1:]))),
    st.tuples(st.just("REPLACE"), _FILES, _WORD, _TEXT).map(lambda t: (t[0], list(t[1:]))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=4))
def test_texts_with_quotes_and_backslashes_parse_verbatim(lines):
    text = "".join(f"{op} {' '.join(args)}\n" for op, args in lines) + "DONE"
    assert re.fullmatch(GRAMMAR, text), text  # the strategy stays inside the grammar
    parsed = parse(text)
    assert [(p.op, p.args) for p in parsed] == [(op, args[:-1] + [args[-1].strip()]) for op, args in lines]


_ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)  # surrogates and controls included
_HOSTILE = st.sampled_from(
    [
        "a.md",
        "d/c.md",
        "*",
        "3",
        "\u00b2",
        "\u0663",
        "9" * 5000,
        ".tmp-a.md",
        "a\x85.md",
        "\udcff",
        "\ud800",
        "k\x00",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(
        st.tuples(st.sampled_from([*ALL_OPS, "NOPE"]), st.lists(st.one_of(_ANY_TEXT, _HOSTILE), max_size=4)),
        max_size=6,
    ),
    text=_ANY_TEXT,
)
def test_no_input_makes_an_operation_raise(calls, text):
    """Whatever the arguments, every operation returns a result (and not by the store's last-resort catch),
    and every result prints as UTF-8 JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open_dir(tmp)
        results = [store.run_op(op, args) for op, args in calls]
        results += execute(store, parse(" ".join(a for _, args in calls for a in args[:1]) + text))
        for r in results:
            assert isinstance(r, OpResult) and r.error_kind != "internal", r.to_json()
            json.dumps(r.to_json(), ensure_ascii=False).encode()


MALFORMED = [
    "I will write a note about the tree.",
    "APPEND notes.md",  # missing text
    "READ ../etc/passwd\nDONE",
    "SEARCH\nDONE",
    'APPEND notes.md "unterminated\nDONE',
    "FLY notes.md\nDONE",
    "append notes.md lowercase op\nDONE",
    "READ notes.md 0 3\nDONE",
    "DELETE notes.md\nDONE",  # DELETE is not enabled in crafter-v0
    "READ notes.md\nREAD notes.md\nREAD notes.md\nREAD notes.md\nREAD notes.md\nDONE",  # over the op limit
    "",
]


def test_malformed_turns_are_rejected_by_grammar_and_parser():
    scaffold = load("crafter-v0")
    for text in MALFORMED:
        assert not re.fullmatch(GRAMMAR, text), text
    # The parser (with the executor) turns each of them into at least one error result or nothing at all.
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open_dir(tmp, Quotas(max_ops_per_turn=4))
        for text in MALFORMED[:-1]:
            if text.startswith("append"):
                continue  # tolerated by the parser (any case), refused by the grammar only
            results = execute(store, parse(text), enabled=scaffold.operations)
            assert any(not r.ok for r in results), text


def test_grammar_is_not_close_to_anything_goes():
    assert not re.fullmatch(GRAMMAR, "DONE DONE")
    assert not re.fullmatch(GRAMMAR, "hello\nDONE")
    assert re.fullmatch(GRAMMAR, "DONE")
    assert re.fullmatch(GRAMMAR, "APPEND notes.md wood is at the river\nDONE")


@given(
    st.lists(st.text(alphabet="ab \nA", max_size=12), max_size=20).map("\n".join),
    st.text(alphabet="abA ", min_size=1, max_size=3),
)
def test_count_lines_equals_a_count_line_by_line(text, needle):
    from automem.memory.ops import _count_lines

    hay, needle = text.lower(), needle.lower()
    assert _count_lines(hay, needle) == sum(needle in line for line in hay.split("\n"))
