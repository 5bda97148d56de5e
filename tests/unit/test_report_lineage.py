# Run: .venv/bin/python -m pytest tests/unit/test_report_lineage.py
"""`automem report` draws Loop 1's lineage (``automem.evolve.lineage``) as a tree: each candidate under the scaffold
it revised, candidates without a scaffold of their own (invalid patch, reviewer error) as leaves, the scaffold in
force marked, diffs capped, and text carried as data (escaped). A store without lineage has an empty section."""

from __future__ import annotations

import json
import re

from automem.evolve.lineage import append_row
from automem.report import ReportConfig, build_payload, render_html
from automem.report.data import _DIFF_BYTES
from automem.trajectory import Storage
from tests.support.synthetic import Step, write_episode

_EVIL = "</script><script>alert(1)</script><b>x</b>"


def _rows(evolve: str = "evo") -> list[dict]:
    gate = {
        "n_seeds": 8,
        "parent_mean": 0.25,
        "margin": 0.0,
        "level": 0.95,
        "p_value": 0.004,
        "op_error_rate_diff": -0.5,
    }
    big = "--- a\n+++ b\n" + "".join(f"+line {i} {'y' * 60}\n" for i in range(400))  # ~28 KB
    return [
        {"iteration": 0, "decision": "start", "reason": "the starting scaffold", "scaffold_id": "s0"}
        | {"content_id": "c0", "current_content_id": "c0"},
        {
            "iteration": 1,
            "decision": "accepted",
            "scaffold_id": "s1",
            "content_id": "c1",
            "parent_content_id": "c0",
        }
        | {"rule": "missing_file", "rationale": "reads failed " + _EVIL, "current_content_id": "c1"}
        | {"diff": "--- s0\n+++ s1\n@@ -1 +1 @@\n-id: s0\n+id: s1\n", "reason": "gain +0.75"}
        | gate
        | {"candidate_mean": 1.0, "mean_diff": 0.75, "lower": 0.5, "upper": 1.0},
        {
            "iteration": 2,
            "decision": "rejected",
            "scaffold_id": "s2",
            "content_id": "c2",
            "parent_content_id": "c1",
        }
        | {"diff": big, "rationale": "r" * 5000, "current_content_id": "c1"}
        | gate
        | {"candidate_mean": 0.1, "mean_diff": -0.15, "lower": -0.3, "upper": 0.0},
        {"iteration": 3, "decision": "invalid_patch", "reject_kind": "schema", "parent_content_id": "c1"}
        | {"reason": "unknown operation FOO", "current_content_id": "c1"},
        {"iteration": 4, "decision": "reviewer_error", "parent_content_id": "c1", "reason": "timeout"}
        | {"current_content_id": "c1"},
    ]


def _store(root, with_lineage: bool = True) -> None:
    write_episode(root, "run1", "ep-00", [Step("room 0"), Step("room 1")], seed=0)
    if with_lineage:
        for row in _rows():
            assert append_row(Storage(str(root)), {"evolve": "evo", **row})


def test_lineage_is_a_tree_with_gate_results_and_capped_diffs(tmp_path):
    _store(tmp_path)
    (run,) = build_payload(str(tmp_path), ReportConfig())["lineage"]
    assert run["evolve"] == "evo" and run["current_content_id"] == "c1"
    nodes = {n["iteration"]: n for n in run["nodes"]}
    assert {i: n["parent"] for i, n in nodes.items()} == {0: None, 1: 0, 2: 1, 3: 1, 4: 1}
    assert [n["decision"] for n in run["nodes"]] == [
        "start",
        "accepted",
        "rejected",
        "invalid_patch",
        "reviewer_error",
    ]
    assert [n["leaf"] for n in run["nodes"]] == [False, False, False, True, True]
    assert [n["current"] for n in run["nodes"]] == [False, True, False, False, False]  # in force at the end
    one = nodes[1]
    assert (one["mean_diff"], one["lower"], one["upper"], one["n_seeds"], one["p_value"]) == (
        0.75,
        0.5,
        1.0,
        8,
        0.004,
    )
    assert one["diff"].endswith("+id: s1\n") and not one["diff_cut"] and one["rule"] == "missing_file"
    two = nodes[2]
    assert two["diff_cut"] and len(two["diff"].encode()) <= _DIFF_BYTES + 100
    assert "diff cut" in two["diff"].splitlines()[-1] and two["diff"].splitlines()[-2].startswith("+line")
    assert len(two["rationale"]) <= 600
    assert nodes[3]["reject_kind"] == "schema" and nodes[3]["diff"] is None


def test_lineage_section_is_in_the_page_with_its_text_escaped(tmp_path):
    _store(tmp_path)
    payload = build_payload(str(tmp_path), ReportConfig())
    page = render_html(payload)
    assert 'id="lineage"' in page and "Scaffold lineage" in page
    assert _EVIL not in page and "alert(1)" in page  # in the data, but never as markup
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m
    assert json.loads(m.group(1))["lineage"][0]["nodes"][1]["rationale"] == "reads failed " + _EVIL
    assert ".innerHTML" not in page  # the page builds nodes from text, never markup


def test_lineage_diffs_share_the_size_cap_and_say_so(tmp_path):
    _store(tmp_path)
    payload = build_payload(str(tmp_path), ReportConfig(max_bytes=70_000))  # 10%: 7 kB for the diffs
    nodes = payload["lineage"][0]["nodes"]
    assert nodes[1]["diff"] and not nodes[1]["diff_left_out"]  # the accepted scaffold's diff goes first
    assert nodes[2]["diff"] is None and nodes[2]["diff_left_out"]
    assert any("lineage node(s) were left out" in n for n in payload["notes"])
    assert len(render_html(payload).encode()) <= 70_000


def test_a_store_without_lineage_has_an_empty_section(tmp_path):
    _store(tmp_path, with_lineage=False)
    payload = build_payload(str(tmp_path), ReportConfig())
    assert payload["lineage"] == [] and payload["n_episodes"] == 1
    assert 'id="lineage" hidden' in render_html(payload)
