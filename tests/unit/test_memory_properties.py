# Run: .venv/bin/python -m pytest tests/unit/test_memory_properties.py
"""Property tests: replay equals the live state; the grammar and the parser agree."""

from __future__ import annotations

import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automem.memory import ALL_OPS, MemoryStore, OpLog, Quotas, execute, parse, replay, turn_regex
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


@settings(max_examples=300, deadline=None)
@given(st.from_regex(GRAMMAR, fullmatch=True))
def test_every_grammar_string_parses_without_error(text):
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
