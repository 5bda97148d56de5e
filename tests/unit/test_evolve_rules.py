# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_evolve_rules.py -q
"""Loop 1's rules (``automem.evolve.rules``): each fires on a hand-built store that shows its diagnostic, stays quiet
on one that does not, and proposes a patch that applies to the scaffold it was given."""

from __future__ import annotations

import pytest

from automem.evolve.patch import apply_patch
from automem.evolve.rules import (
    RULES,
    gather_evidence,
    keyed_file,
    missing_file,
    parse_errors,
    proposals,
    stray_files,
    token_cap,
    unread_memory,
)
from automem.scaffold.schema import MemoryFile, Prompts, Scaffold
from automem.trajectory import connect
from tests.support.synthetic import Step, write_episode

PROMPTS = Prompts(system="You walk a corridor.", log="LOG: record.", plan="PLAN: read.", action="Act.")


def _scaffold(**kw) -> Scaffold:
    files = kw.pop("files", (MemoryFile(name="notes.md", purpose="what you saw", initial="start\n"),))
    return Scaffold(id="toy", env="corridor", prompts=PROMPTS, files=files, **kw)


def _evidence(tmp_path, episodes: list[list[Step]], scaffold: Scaffold):
    root = str(tmp_path / "store")
    for i, steps in enumerate(episodes):
        write_episode(root, "r", f"e{i}", steps, seed=i, initial_files={"notes.md": "start\n"})
    con = connect(root)
    try:
        return gather_evidence(con, scaffold, "r")
    finally:
        con.close()


def _steps(n: int, log: str = "", plan: str = "") -> list[Step]:
    return [Step(f"at {t}", "right", log=[log] if log else [], plan=[plan] if plan else []) for t in range(n)]


def test_missing_file_fires_on_reads_of_a_file_that_never_exists(tmp_path):
    scaffold = _scaffold(files=(*_scaffold().files, MemoryFile(name="route.md", purpose="the way")))
    ev = _evidence(tmp_path, [_steps(4, plan="READ route.md"), _steps(4, plan="READ route.md")], scaffold)
    assert ev.missing_reads["route.md"] == 8 and ev.read_ops == 8
    p = missing_file(ev, scaffold)
    assert p is not None and p.rule == "missing_file" and "route.md" in p.finding
    new = apply_patch(scaffold, p.patch).scaffold
    assert next(f for f in new.files if f.name == "route.md").initial.startswith("# route.md: the way")


def test_missing_file_adds_a_file_outside_the_schema(tmp_path):
    scaffold = _scaffold()
    ev = _evidence(tmp_path, [_steps(5, plan="READ plan.md")], scaffold)
    p = missing_file(ev, scaffold)
    assert p is not None
    assert "plan.md" in apply_patch(scaffold, p.patch).scaffold.file_names


def test_missing_file_is_quiet_when_reads_succeed(tmp_path):
    scaffold = _scaffold()
    ev = _evidence(tmp_path, [_steps(6, plan="READ notes.md")], scaffold)
    assert ev.reads["notes.md"] == 6 and not ev.missing_reads
    assert missing_file(ev, scaffold) is None


def test_stray_files_keeps_writes_to_the_schema(tmp_path):
    scaffold = _scaffold()
    steps = [Step(f"at {t}", "right", log=[f"APPEND junk{t % 3}.md word {t}"]) for t in range(6)]
    ev = _evidence(tmp_path, [steps], scaffold)
    p = stray_files(ev, scaffold)
    assert p is not None and p.patch == {"allow_new_files": False} and "6 of 6 writes" in p.finding
    assert not apply_patch(scaffold, p.patch).scaffold.allow_new_files
    assert stray_files(ev, _scaffold(allow_new_files=False)) is None


def test_stray_files_is_quiet_when_writes_stay_in_the_schema(tmp_path):
    scaffold = _scaffold()
    steps = [Step(f"at {t}", "right", log=[f"APPEND notes.md word {t}"]) for t in range(6)]
    assert stray_files(_evidence(tmp_path, [steps], scaffold), scaffold) is None


def test_keyed_file_fires_on_repeated_appends_and_says_so_in_purpose_and_log_prompt(tmp_path):
    scaffold = _scaffold(operations=("READ", "APPEND"))
    ev = _evidence(tmp_path, [_steps(5, log="APPEND notes.md the door is east")], scaffold)
    assert ev.appends["notes.md"] == 5 and ev.redundant_appends["notes.md"] == 4
    p = keyed_file(ev, scaffold)
    assert p is not None
    new = apply_patch(scaffold, p.patch).scaffold
    assert "UPSERT" in new.operations
    assert "UPSERT" in new.files[0].purpose and "UPSERT notes.md" in new.prompts.log


def test_keyed_file_is_quiet_on_new_lines(tmp_path):
    scaffold = _scaffold()
    steps = [Step(f"at {t}", "right", log=[f"APPEND notes.md fact number {t}"]) for t in range(6)]
    ev = _evidence(tmp_path, [steps], scaffold)
    assert ev.redundant_appends["notes.md"] == 0
    assert keyed_file(ev, scaffold) is None


def test_token_cap_raises_the_cap_then_lowers_ops_per_turn(tmp_path):
    long = "APPEND notes.md " + "a long line of notes " * 6
    low = _scaffold(sampling={"memory_max_tokens": 16})
    ev = _evidence(tmp_path, [_steps(4, log=long)], low)
    assert ev.capped_turns == ev.memory_turns == 4
    p = token_cap(ev, low)
    assert p is not None and p.patch == {"sampling": {"memory_max_tokens": 24}}
    high = _scaffold(sampling={"memory_max_tokens": 8}, quotas={"max_ops_per_turn": 3})
    high = high.model_copy(update={"sampling": high.sampling.model_copy(update={"memory_max_tokens": 512})})
    ev.capped_turns = ev.memory_turns
    assert token_cap(ev, high).patch == {"quotas": {"max_ops_per_turn": 2}}


def test_token_cap_is_quiet_when_turns_end_early(tmp_path):
    scaffold = _scaffold()
    ev = _evidence(tmp_path, [_steps(4, log="APPEND notes.md x")], scaffold)
    assert ev.capped_turns == 0 and token_cap(ev, scaffold) is None


def test_unread_memory_puts_a_written_never_read_file_in_the_prompt(tmp_path):
    scaffold = _scaffold()
    steps = [Step(f"at {t}", "right", log=[f"APPEND notes.md fact {t}"]) for t in range(6)]
    ev = _evidence(tmp_path, [steps], scaffold)
    p = unread_memory(ev, scaffold)
    assert p is not None and p.patch == {"context": {"include_files": ["notes.md"]}}
    assert apply_patch(scaffold, p.patch).scaffold.context.include_files == ("notes.md",)
    read = [
        Step(f"at {t}", "right", log=[f"APPEND notes.md fact {t}"], plan=["READ notes.md"]) for t in range(6)
    ]
    assert unread_memory(_evidence(tmp_path / "b", [read], scaffold), scaffold) is None


def test_parse_errors_turn_the_grammar_on_only_when_it_is_off(tmp_path):
    free = _scaffold(constrained=False)
    ev = _evidence(tmp_path, [_steps(5, log="SCRIBBLE something")], free)
    assert ev.parse_errors == 5
    assert parse_errors(ev, free).patch == {"constrained": True}
    assert parse_errors(ev, _scaffold()) is None


def test_rules_are_ordered_and_all_listed(tmp_path):
    assert [r.__name__ for r in RULES] == [
        "missing_file",
        "stray_files",
        "keyed_file",
        "token_cap",
        "unread_memory",
        "parse_errors",
    ]
    scaffold = _scaffold(files=(*_scaffold().files, MemoryFile(name="route.md", purpose="the way")))
    ev = _evidence(
        tmp_path, [_steps(6, log="APPEND notes.md the door is east", plan="READ route.md")], scaffold
    )
    assert [p.rule for p in proposals(ev, scaffold)][:2] == ["missing_file", "keyed_file"]


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_is_quiet_on_an_empty_run(tmp_path, rule):
    scaffold = _scaffold()
    assert rule(_evidence(tmp_path, [_steps(3)], scaffold), scaffold) is None
