# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_evolve_digest.py -q
"""Digests for Loop 1's reviewers (``automem.evolve.digest``): within the token budget at every size and with
every tokenizer, problem turns of each kind when the budget allows, deterministic, cuts marked in the text.

The store is hand-built (``tests.support.synthetic``): its memory operations run through the real memory code,
so failed operations, redundant writes and empty searches are what a live run would have stored.
"""

from __future__ import annotations

import pytest

from automem.evolve.digest import MIN_BUDGET, Digest, build_digest
from automem.llm.tokens import ApproxTokenCounter, HFTokenCounter
from automem.trajectory import connect
from tests.support.synthetic import Step, write_episode

BUDGETS = (60, 200, 800, 4000)


def _success() -> list[Step]:
    """Reaches the goal; writes a fact twice (a redundant write), reads a missing file, searches in vain."""
    return [
        Step(
            "corridor: you are at 0\nexits: east", "east", log=["APPEND notes.md door is east"], state_key="0"
        ),
        Step(
            "corridor: you are at 1",
            "east",
            log=["APPEND notes.md door is east\nREAD plan.md"],
            plan=["SEARCH dragon"],
            progression=0.5,
            state_key="1",
        ),
        Step(
            "corridor: you are at 2",
            "east",
            log=["APPEND notes.md key under mat"],
            plan=["SEARCH door"],
            progression=1.0,
            state_key="2",
        ),
    ]


def _death() -> list[Step]:
    """Terminated early, below full progression: a death."""
    return [
        Step("corridor: at 0", "east", log=["WRITE plan.md go east"], state_key="0"),
        Step("corridor: at 1", "west", log=["TAIL diary.md 3"], progression=0.2, state_key="1"),
        Step(
            "corridor: at 1, a pit", "down", log=["APPEND plan.md go east"], progression=0.2, state_key="pit"
        ),
    ]


def _stall() -> list[Step]:
    """Truncated after five actions that changed nothing: a stall."""
    steps = [Step("corridor: at 0", "east", log=["APPEND notes.md start"], progression=0.3, state_key="1")]
    for t in range(5):
        steps.append(
            Step(f"corridor: at 1, T:{t}", "bump", plan=["SEARCH exit"], progression=0.3, state_key="1")
        )
    return steps


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("digest") / "store"
    write_episode(root, "run1", "ep-win", _success(), seed=1)
    write_episode(root, "run1", "ep-pit", _death(), seed=2)
    write_episode(root, "run1", "ep-stuck", _stall(), seed=3, terminated=False, truncated=True)
    write_episode(root, "run2", "ep-other", _success(), seed=4)
    return str(root)


def _counters():
    counters = [("approx", ApproxTokenCounter())]
    try:
        from automem.llm.embedded import find_gguf, is_prepared, prepared_dir

        folder = prepared_dir(find_gguf())
    except FileNotFoundError:
        return counters
    if is_prepared(folder) and (folder / "tokenizer.json").is_file():
        counters.append(("smollm2", HFTokenCounter.from_model_dir(folder)))
    return counters


COUNTERS = _counters()


@pytest.mark.parametrize("name,counter", COUNTERS, ids=[n for n, _ in COUNTERS])
@pytest.mark.parametrize("budget", BUDGETS)
def test_within_budget(store, name, counter, budget):
    d = build_digest(store, counter=counter, budget=budget, run_id="run1")
    assert isinstance(d, Digest)
    assert d.tokens == counter.count(d.text) <= budget, d.text
    assert d.budget == budget and d.episodes == 3 and d.text
    if budget <= 200:
        assert "for the budget]" in d.text and d.cut


@pytest.mark.parametrize("budget", [MIN_BUDGET, 17, 20, 25, 33, 50, 90, 130, 300, 450, 600, 1000, 1500])
def test_within_budget_at_many_sizes(store, budget):
    for _, counter in COUNTERS:
        d = build_digest(store, counter=counter, budget=budget)
        assert counter.count(d.text) <= budget, (budget, d.text)


def test_tiny_budget_cuts_the_header_itself(store):
    d = build_digest(store, counter=ApproxTokenCounter(), budget=30)
    assert "[… rest of the header cut for the budget]" in d.text
    assert d.turns_shown == 0 and any("header" in c for c in d.cut)


def test_budget_too_small_is_refused(store):
    with pytest.raises(ValueError, match="at least 16 tokens"):
        build_digest(store, counter=ApproxTokenCounter(), budget=10)


def test_large_budget_shows_every_problem_kind_with_outcomes(store):
    d = build_digest(store, counter=ApproxTokenCounter(), budget=6000, run_id="run1", max_turns=20)
    text = d.text
    for label in ("[failed operation", "redundant write", "read returned nothing", "death]", "stall]"):
        assert label in text, label
    assert "READ plan.md -> ERROR missing" in text  # the error message, recomputed by replay
    assert "SEARCH dragon -> ok, empty" in text
    assert "APPEND notes.md door is east -> ok, redundant" in text
    assert 'outcome: action "east", progression 0.50, next obs "corridor: you are at 2"' in text
    assert "ep-stuck steps 3-5 of 6: truncated" in text and "ep-pit steps 0-2 of 3: terminated" in text
    # Diagnostics over the three episodes.
    assert "progression: mean 0.50; ep-pit(seed 2)=0.20 ep-stuck(seed 3)=0.30 ep-win(seed 1)=1.00" in text
    assert "failed operations: 2/" in text and "missing 2" in text
    assert "redundant writes: 2/" in text and "to notes.md 1, plan.md 1" in text
    assert "deaths 1, stalls 1" in text
    # Final memory of the best and the worst episode.
    assert "### run1/ep-win notes.md" in text and "### run1/ep-pit plan.md" in text
    assert d.turns_shown == d.turns_available and not d.cut
    assert set(d.sections) == {"header", "turns", "memory"} and all(d.sections.values())


def test_small_budget_keeps_diversity_and_marks_cuts(store):
    d = build_digest(store, counter=ApproxTokenCounter(), budget=700, run_id="run1")
    assert 0 < d.turns_shown < d.turns_available
    assert "more problem turns left out for the budget]" in d.text
    # The first items the sampler takes are of different kinds.
    labels = [line.split("]")[0] for line in d.text.splitlines() if line.startswith("- [")]
    assert len(set(labels)) == len(labels) >= 2


def test_deterministic_and_seeded(store):
    c = ApproxTokenCounter()
    a = build_digest(store, counter=c, budget=900, max_turns=3, seed=7)
    b = build_digest(store, counter=c, budget=900, max_turns=3, seed=7)
    assert a == b
    texts = {build_digest(store, counter=c, budget=5000, max_turns=3, seed=s).text for s in range(6)}
    assert len(texts) > 1  # the seed picks among the candidates


def test_selection_by_episodes_and_by_connection(store):
    con = connect(store)
    try:
        d = build_digest(con, counter=ApproxTokenCounter(), budget=3000, episodes=[("run1", "ep-pit", 1)])
        assert con.execute("SELECT count(*) FROM episodes").fetchone() == (
            4,
        )  # the caller's views are untouched
    finally:
        con.close()
    assert d.episodes == 1 and "run1/ep-win" not in d.text and "death] run1/ep-pit" in d.text
    with pytest.raises(ValueError, match="no committed episode run1/nope#1"):
        build_digest(store, counter=ApproxTokenCounter(), budget=3000, episodes=[("run1", "nope", 1)])


def test_empty_selection_is_an_error(store, tmp_path):
    with pytest.raises(ValueError, match="no committed episodes of run 'run9' to digest"):
        build_digest(store, counter=ApproxTokenCounter(), budget=500, run_id="run9")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no committed episodes to digest"):
        build_digest(str(tmp_path / "empty"), counter=ApproxTokenCounter(), budget=500)


def test_memory_file_cut_to_the_lines_that_fit(tmp_path):
    steps = [
        Step(f"room {t}", "east", log=[f"APPEND notes.md fact {t}"], state_key=str(t), progression=t / 40)
        for t in range(30)
    ]
    write_episode(tmp_path / "store", "run1", "ep-long", steps)
    c = ApproxTokenCounter()
    whole = build_digest(str(tmp_path / "store"), counter=c, budget=4000)
    assert "fact 29" in whole.text and not whole.cut
    d = build_digest(str(tmp_path / "store"), counter=c, budget=500)
    assert d.tokens <= 500 and "fact 0" in d.text and "fact 29\n" not in d.text
    assert "more lines cut for the budget]" in d.text and any("notes.md cut to" in x for x in d.cut)
