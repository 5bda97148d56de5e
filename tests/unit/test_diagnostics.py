# Run: .venv/bin/python -m pytest tests/unit/test_diagnostics.py
"""Each diagnostic on small hand-built episodes with known answers: one case where it must be zero, one where it
must be a known number. Episodes run their memory operations through the real memory code (synthetic.Step)."""

from __future__ import annotations

import numpy as np
import pytest

from automem.diagnostics import analyse_ops, analyse_steps, diagnose
from automem.diagnostics.actions import strip_clock
from automem.diagnostics.stats import bootstrap_ci, compare
from tests.support.synthetic import Step, write_episode


def ops_of(steps, initial_files=None):
    """The op log of a hand-built episode, as rows read back from the store."""
    import tempfile

    from automem.trajectory import query

    with tempfile.TemporaryDirectory() as d:
        write_episode(d, "r", "e", steps, initial_files=initial_files)
        return query(d, "SELECT * FROM memory_ops").to_pylist()


# -- redundant writes and repeated operations ---------------------------------------------------------------------


def test_distinct_writes_are_not_redundant():
    q = analyse_ops(
        ops_of([Step("o", log=["APPEND a.md one\nAPPEND a.md two", "UPSERT a.md hp 3\nWRITE b.md x"])])
    )
    assert (q.writes, q.redundant_writes, q.repeated_ops) == (4, 0, 0)


def test_redundant_writes_are_counted_after_normalising_case_and_whitespace():
    steps = [
        Step("o", log=["APPEND a.md Saw a tree\nUPSERT a.md hp 3"]),
        Step("o", log=["APPEND a.md  saw   A TREE \nAPPEND a.md saw a bush"]),  # 1 redundant, 1 not
        Step(
            "o", log=["UPSERT a.md HP 3\nUPSERT a.md hp 4"]
        ),  # same line (normalised): redundant; new value: not
        Step(
            "o", log=["WRITE a.md saw a tree\nWRITE a.md saw a tree"]
        ),  # prunes (not redundant), then no change
        Step("o", log=["REPLACE a.md tree tree"]),  # changes nothing: redundant
    ]
    q = analyse_ops(ops_of(steps))
    assert q.writes == 9
    assert q.redundant_writes == 4
    assert q.op_errors == 0
    assert q.repeated_ops == 1  # the second identical WRITE in one turn


def test_initial_files_are_neither_writes_nor_written_lines():
    q = analyse_ops(
        ops_of([Step("o", log=["APPEND g.md goal one"], plan=["READ g.md"])], {"g.md": "goal one\n"})
    )
    assert (q.writes, q.redundant_writes, q.ops) == (1, 1, 2)  # the APPEND repeats the scaffold's line
    assert (q.lines_written, q.lines_read_back) == (1, 1)


# -- failing operations and empty searches ------------------------------------------------------------------------


def test_clean_operations_have_no_errors_and_no_empty_searches():
    q = analyse_ops(ops_of([Step("o", log=["APPEND a.md tree"], plan=["SEARCH tree"])]))
    assert (q.op_errors, sum(q.errors_by_kind.values()), q.searches, q.empty_searches) == (0, 0, 1, 0)


def test_failing_operations_are_counted_by_kind():
    long_line = "x" * 300  # over the 240-character line quota
    steps = [
        Step("o", log=["READ missing.md\nFROB a.md\nAPPEND ../up.md hi\nAPPEND a.md " + long_line]),
        Step("o", log=["this is prose, not an operation"], plan=["SEARCH nothing-here", "APPEND a.md no"]),
    ]
    q = analyse_ops(ops_of(steps))
    kinds = dict(q.errors_by_kind)
    assert kinds["missing"] == 1 and kinds["path"] == 1 and kinds["quota"] == 1 and kinds["read_only"] == 1
    assert kinds["unknown_op"] == 1  # FROB: read as an operation, but there is no such operation
    assert kinds["parse"] == 1  # prose: not an operation at all
    assert q.op_errors == 6
    assert (q.searches, q.empty_searches) == (1, 1)


# -- memory utility with provenance -------------------------------------------------------------------------------


def test_utility_is_zero_when_nothing_written_is_read():
    q = analyse_ops(ops_of([Step("o", log=["APPEND a.md one\nAPPEND a.md two"], plan=["SEARCH zebra"])]))
    assert (q.lines_written, q.lines_read_back, q.utility) == (2, 0, 0.0)
    assert q.links == []


def test_utility_links_each_returned_line_to_the_write_that_produced_it():
    steps = [
        Step("o", log=["APPEND a.md tree north\nAPPEND a.md rock south\nAPPEND b.md water east"]),
        Step("o", log=["UPSERT a.md hp 5"], plan=["SEARCH tree", "TAIL a.md 1"]),
        Step("o", log=["APPEND a.md cave west"], plan=["READ a.md 2 2"]),
    ]
    rows = ops_of(steps)
    q = analyse_ops(rows)
    assert q.lines_written == 5  # 4 appended lines + the UPSERT line (the rewrite keeps the others' identity)
    assert q.lines_read_back == 3  # "tree north" (SEARCH), "hp: 5" (TAIL 1), "rock south" (READ 2 2)
    assert q.utility == pytest.approx(0.6)
    ordered = sorted(rows, key=lambda r: (r["step"], {"log": 1, "plan": 2}[r["phase"]], r["turn"], r["seq"]))
    pairs = {(ordered[r]["op"], ordered[w]["op"], tuple(ordered[w]["args"])) for r, w in q.links}
    assert pairs == {
        ("SEARCH", "APPEND", ("a.md", "tree north")),
        ("TAIL", "UPSERT", ("a.md", "hp", "5")),
        ("READ", "APPEND", ("a.md", "rock south")),
    }
    assert q.linked_reads == 3
    assert q.link_records() == [
        {
            "read": {"step": 1, "phase": "plan", "turn": 0, "seq": 0, "op": "SEARCH", "line": 0},
            "write": {"step": 0, "phase": "log", "turn": 0, "seq": 0, "op": "APPEND"},
        },
        {
            "read": {"step": 1, "phase": "plan", "turn": 1, "seq": 0, "op": "TAIL", "line": 0},
            "write": {"step": 1, "phase": "log", "turn": 0, "seq": 0, "op": "UPSERT"},
        },
        {
            "read": {"step": 2, "phase": "plan", "turn": 0, "seq": 0, "op": "READ", "line": 0},
            "write": {"step": 0, "phase": "log", "turn": 0, "seq": 1, "op": "APPEND"},
        },
    ]
    assert len(q.link_records(limit=2)) == 2


def test_a_read_of_the_scaffolds_lines_only_is_not_linked():
    q = analyse_ops(
        ops_of([Step("o", log=["APPEND n.md mine"], plan=["READ g.md", "READ n.md"])], {"g.md": "goal\n"})
    )
    assert (q.reads, q.linked_reads, len(q.links)) == (2, 1, 1)  # READ g.md returned no line the agent wrote


def test_a_cut_output_returns_only_the_lines_shown():
    from automem.memory.quotas import Quotas

    text = "\n".join(f"APPEND a.md line number {i:03d} " + "y" * 40 for i in range(20))
    quotas = Quotas(max_output_chars=200)

    import tempfile

    from automem.trajectory import query

    with tempfile.TemporaryDirectory() as d:
        write_episode(d, "r", "e", [Step("o", log=[text], plan=["READ a.md"])], quotas=quotas)
        q = analyse_ops(query(d, "SELECT * FROM memory_ops").to_pylist())
    # 8 appends run (the per-turn limit); each line is 56 characters, so the 200 characters shown start 4 lines.
    assert q.lines_written == 8
    assert q.lines_read_back == 4


def test_a_cut_search_returns_only_the_hits_shown():
    from automem.diagnostics.memory_quality import shown_chars
    from automem.memory import MemoryStore
    from automem.memory.quotas import Quotas

    store = MemoryStore.in_memory(quotas=Quotas(max_output_chars=100))
    for i in range(10):
        store.run_op("APPEND", ["a.md", f"tree number {i}"])
    cut = store.run_op("SEARCH", ["tree"]).output
    full = MemoryStore.in_memory(dict(store.backend.files)).run_op("SEARCH", ["tree"]).output
    assert "more matching lines not shown" in cut
    shown = shown_chars("SEARCH", full.split("\n"), len(cut))
    assert full[:shown] == cut[:shown] and cut[shown:].startswith("\n... [")


# -- memory size --------------------------------------------------------------------------------------------------


def test_memory_size_over_steps():
    steps = [
        Step("o"),
        Step("o", log=["APPEND a.md abc"]),
        Step("o", log=["APPEND b.md de\nAPPEND a.md f"]),
        Step("o", log=["DELETE a.md"]),
    ]
    q = analyse_ops(ops_of(steps))
    assert q.size_by_step == {1: (4, 1, 1), 2: (9, 3, 2), 3: (3, 1, 1)}
    assert (q.final_bytes, q.final_lines, q.final_files) == (3, 1, 1)
    assert analyse_ops([]).size_by_step == {}


def test_memory_size_series_are_bounded_and_carry_sizes_forward():
    from automem.diagnostics.series import bucket_ends, episode_series, group_series

    assert bucket_ends(4) == [0, 1, 2, 3] and bucket_ends(0) == []
    assert bucket_ends(1000) == [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
    sizes = {1: (4, 1, 1), 2: (9, 3, 2), 3: (3, 1, 1)}
    assert episode_series(sizes, 4) == [
        {"step": 0, "bytes": 0, "lines": 0, "files": 0},
        {"step": 1, "bytes": 4, "lines": 1, "files": 1},
        {"step": 2, "bytes": 9, "lines": 3, "files": 2},
        {"step": 3, "bytes": 3, "lines": 1, "files": 1},
    ]
    long = episode_series({0: (10, 1, 1), 500: (20, 2, 1)}, 1000)
    assert [p["step"] for p in long] == bucket_ends(1000)
    assert [p["bytes"] for p in long] == [10] * 5 + [20] * 5  # carried forward over steps without ops
    # Two episodes: 2 steps (always 0 bytes) and 4 steps; at step 3 only the longer one is still running.
    g = group_series([({}, 2), (sizes, 4)])
    assert [p["episodes"] for p in g] == [2, 2, 1, 1]
    assert g[1]["bytes_mean"] == 2.0 and g[1]["bytes_max"] == 4 and g[3]["bytes_p50"] == 3.0


# -- unproductive and invalid actions ----------------------------------------------------------------------------


def srow(t, key=None, valid=True, obs=None):
    return {"step": t, "action_valid": valid, "state_key": key, "observation": obs}


def test_actions_that_change_state_are_productive():
    q = analyse_steps([srow(0, "a"), srow(1, "b"), srow(2, "c")])
    assert (q.method, q.assessed, q.unproductive, q.invalid) == ("state_key", 2, 0, 0)


def test_unproductive_and_invalid_actions_with_state_key():
    rows = [srow(0, "a"), srow(1, "a"), srow(2, "a", valid=False), srow(3, "b"), srow(4, "b")]
    q = analyse_steps(rows)
    assert (q.method, q.invalid, q.assessed, q.unproductive) == ("state_key", 1, 3, 2)


def test_observation_fallback_ignores_clocks():
    assert strip_clock("HP:5 T:120\nTurn 7, Step 3/100") == strip_clock("HP:5 T:121\nTurn 8, Step 4/100")
    assert strip_clock("HP:5 T:120") != strip_clock("HP:4 T:120")
    rows = [
        srow(0, obs="at 1\nT:1"),
        srow(1, obs="at 1\nT:2"),
        srow(2, obs="at 2\nT:3"),
        srow(3, obs="at 2\nT:4"),
    ]
    q = analyse_steps(rows)
    assert (q.method, q.assessed, q.unproductive) == ("observation", 3, 2)  # the last action is not assessed
    q = analyse_steps([srow(0, obs="a"), srow(1, obs="b"), srow(2, obs="c")])
    assert q.unproductive == 0


# -- intervals and comparisons ------------------------------------------------------------------------------------


def test_bootstrap_interval_of_constant_values_is_a_point_and_covers_the_mean():
    assert bootstrap_ci(np.full(10, 0.5), np.ones(10)) == (0.5, 0.5)
    rng = np.random.default_rng(1)
    x = rng.normal(0.4, 0.1, 200)
    lo, hi = bootstrap_ci(x, np.ones_like(x))
    assert lo < 0.4 < hi and hi - lo < 0.05
    assert bootstrap_ci(np.array([]), np.array([])) == (None, None)


def test_paired_comparison_removes_seed_variance():
    rng = np.random.default_rng(2)
    seed_effect = rng.normal(0, 1.0, 40)  # games differ a lot by seed
    a = seed_effect + 0.0
    b = seed_effect + 0.1 + rng.normal(0, 0.01, 40)
    ones = np.ones(40)
    paired = compare((a, ones), (b, ones), paired=True)
    unpaired = compare((a, ones), (b, ones), paired=False)
    assert paired.diff == pytest.approx(0.1, abs=0.01)
    assert paired.lo > 0.09 and paired.hi < 0.11  # tight, and excludes zero
    assert unpaired.lo < 0 < unpaired.hi  # the same data, unpaired, cannot tell


def _per_episode(seeds, progression):
    """A per-episode table with every measure's counts at 1, and the given seeds and progression."""
    import pyarrow as pa

    from automem.diagnostics import MEASURES

    n = len(seeds)
    cols = {c: [1.0] * n for m in MEASURES for c in (m.num, m.den) if c}
    return pa.table({**cols, "env_id": ["e"] * n, "seed": list(seeds), "progression": list(progression)})


def test_pairing_uses_the_shared_seeds_and_counts_what_it_leaves_out():
    from automem.diagnostics import compare_tables

    rng = np.random.default_rng(3)
    effect = rng.normal(0.5, 0.2, 40)  # games differ a lot by seed
    a = _per_episode(range(40), effect)
    b = _per_episode(range(39), effect[:39] + 0.05)  # B lacks one seed
    r = {x["measure"]: x for x in compare_tables(a, b).to_pylist()}["progression"]
    assert r["paired"] and (r["pairs"], r["n_a"], r["n_b"], r["dropped_a"], r["dropped_b"]) == (
        39,
        39,
        39,
        1,
        0,
    )
    assert r["diff"] == pytest.approx(0.05) and r["verdict"] == "better"  # paired, the seed variance cancels
    assert 0.049 < r["diff_lo"] <= r["diff_hi"] < 0.051


def test_too_few_shared_seeds_compare_unpaired_on_every_episode():
    from automem.diagnostics import compare_tables

    few = compare_tables(_per_episode(range(10), [0.1] * 10), _per_episode(range(8, 18), [0.2] * 10))
    r = few.to_pylist()[0]  # 2 shared seeds: fewer than MIN_PAIRS
    assert not r["paired"] and (r["pairs"], r["shared_seeds"], r["n_a"], r["n_b"]) == (0, 2, 10, 10)
    assert (r["dropped_a"], r["dropped_b"]) == (0, 0)
    # 4 shared seeds, but they hold under half of B's 14 episodes: unpaired too.
    thin = compare_tables(_per_episode(range(4), [0.1] * 4), _per_episode(range(14), [0.2] * 14)).to_pylist()[
        0
    ]
    assert not thin["paired"] and thin["shared_seeds"] == 4 and thin["n_b"] == 14


# -- the whole store, grouped ------------------------------------------------------------------------------------


def test_diagnose_groups_by_scaffold_and_reads_committed_episodes_only(tmp_path):
    good = [
        Step("o", log=[f"APPEND a.md fact {t}"], plan=["SEARCH fact"], state_key=str(t)) for t in range(4)
    ]
    bad = [Step("o", log=["APPEND a.md same", "READ nope.md"], state_key="s", valid=t != 1) for t in range(4)]
    for seed in range(3):
        write_episode(tmp_path, "r1", f"g{seed}", good, seed=seed, scaffold_id="good")
        write_episode(tmp_path, "r1", f"b{seed}", bad, seed=seed, scaffold_id="bad")
    write_episode(tmp_path, "r1", "uncommitted", bad, scaffold_id="good", commit=False)
    result = diagnose(str(tmp_path), "scaffold")
    rows = {r["scaffold_id"]: r for r in result.table.to_pylist()}
    assert rows["good"]["episodes"] == 3 and rows["bad"]["episodes"] == 3
    g, b = rows["good"], rows["bad"]
    assert (g["redundant_write_rate"], g["op_error_rate"], g["unproductive_rate"]) == (0.0, 0.0, 0.0)
    assert g["memory_utility"] == 1.0 and g["invalid_action_rate"] == 0.0
    assert b["redundant_write_rate"] == pytest.approx(3 / 4)  # 4 identical appends: 3 redundant
    assert b["op_error_rate"] == pytest.approx(0.5) and b["unknown_file_rate"] == pytest.approx(0.5)
    assert b["unproductive_rate"] == pytest.approx(1.0)  # 2 assessed valid actions, both unchanged
    assert b["invalid_action_rate"] == pytest.approx(0.25) and b["memory_utility"] == 0.0
    assert g["progression_lo"] <= g["progression"] <= g["progression_hi"]
    assert result.episodes.table.num_rows == 6
    # Memory size over steps, per group (bounded): the good episodes append one 7-byte line per step.
    assert [p["bytes_mean"] for p in g["memory_by_step"]] == [7.0, 14.0, 21.0, 28.0]
    assert [p["bytes_max"] for p in b["memory_by_step"]] == [5, 10, 15, 20]  # redundant appends still grow it
    assert g["linked_read_rate"] == 1.0 and b["linked_read_rate"] is None  # the bad ones never read


# -- cost and progression: known answers ------------------------------------------------------------------------


def _cost_store(root):
    # A: 4 steps, 1200 tokens, 6 s, progression 0.3; B: 6 steps, 2800 tokens, 10 s, progression 0.5.
    for episode, steps, seed, progression, prompt, completion, seconds in (
        ("a", 4, 1, 0.3, 1000, 200, 6.0),
        ("b", 6, 2, 0.5, 2500, 300, 10.0),
    ):
        write_episode(
            root,
            "r",
            episode,
            [Step("o")] * steps,
            seed=seed,
            progression=progression,
            prompt_tokens=prompt,
            completion_tokens=completion,
            llm_seconds=seconds,
        )


def test_tokens_and_model_seconds_per_step_and_per_progression_point(tmp_path):
    _cost_store(tmp_path)
    row = diagnose(str(tmp_path), "").table.to_pylist()[0]
    assert row["tokens_per_step"] == pytest.approx(4000 / 10)
    assert row["llm_s_per_step"] == pytest.approx(16.0 / 10)
    assert row["tokens_per_point"] == pytest.approx(4000 / 80)  # 30 + 50 progression points
    assert row["llm_s_per_point"] == pytest.approx(16.0 / 80)


def test_cost_is_zero_without_model_calls_and_undefined_without_progress(tmp_path):
    write_episode(
        tmp_path / "free",
        "r",
        "a",
        [Step("o")] * 3,
        progression=0.2,
        prompt_tokens=0,
        completion_tokens=0,
        llm_seconds=0.0,
    )
    row = diagnose(str(tmp_path / "free"), "").table.to_pylist()[0]
    assert (row["tokens_per_step"], row["llm_s_per_step"]) == (0.0, 0.0)
    assert (row["tokens_per_point"], row["llm_s_per_point"]) == (0.0, 0.0)
    write_episode(tmp_path / "stuck", "r", "a", [Step("o")] * 3, progression=0.0)
    row = diagnose(str(tmp_path / "stuck"), "").table.to_pylist()[0]
    assert (
        row["tokens_per_point"] is None and row["llm_s_per_point"] is None
    )  # no progress: no per-point cost


def test_progression_mean_and_bootstrap_interval_known_answers(tmp_path):
    _cost_store(tmp_path)
    row = diagnose(str(tmp_path), "").table.to_pylist()[0]
    # Resampled means of two episodes are 0.3, 0.4 or 0.5 with chances 1/4, 1/2, 1/4: the 95% interval is the
    # range.
    assert (row["progression"], row["progression_lo"], row["progression_hi"]) == pytest.approx(
        (0.4, 0.3, 0.5)
    )
    for i, p in enumerate((0.0, 0.0, 0.6)):  # a third episode's mean is 0 with chance 8/27 > 2.5%
        write_episode(tmp_path / "three", "r", f"e{i}", [Step("o")], seed=i, progression=p)
    row = diagnose(str(tmp_path / "three"), "").table.to_pylist()[0]
    assert (row["progression"], row["progression_lo"], row["progression_hi"]) == pytest.approx(
        (0.2, 0.0, 0.6)
    )
    write_episode(tmp_path / "zero", "r", "e", [Step("o")] * 2, progression=0.0)
    row = diagnose(str(tmp_path / "zero"), "").table.to_pylist()[0]
    assert (row["progression"], row["progression_lo"], row["progression_hi"]) == (0.0, 0.0, 0.0)
