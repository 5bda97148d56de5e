# Run: .venv/bin/python -m pytest tests/unit/test_diagnostics_report.py
"""`automem report`: the page is self-contained, the replay rebuilds memory per step from the op log, and the
size caps sample episodes and say so. (The page in a real browser: tests/integration/test_report_browser.py.)"""

from __future__ import annotations

import json
import re

from automem.report import ReportConfig, build_payload, render_html, write_report
from pipelines.cli import main
from tests.support.synthetic import Step, write_episode


def _episode(root, i, n=4):
    steps = [
        Step(
            f"room {t}\n</script><!-- x",
            log=[f"APPEND notes.md seen room {t}"],
            plan=["SEARCH room"],
            state_key=str(t),
        )
        for t in range(n)
    ]
    steps[2].log = ["WRITE notes.md only this"]  # a rewrite: shipped as the full text
    write_episode(root, "run1", f"ep-{i:02d}", steps, seed=i, scaffold_id="s" + str(i % 2))


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_report_is_self_contained_and_escapes_its_data(tmp_path):
    _episode(tmp_path, 0)
    info = write_report(str(tmp_path), tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert info["replayed"] == 1 and info["notes"] == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "nothing may load from the network"
    assert "default-src 'none'" in html  # and the page's CSP forbids it anyway
    data = _data(html)  # "</script>" in an observation did not end the data block
    assert data["replay"][0]["steps"][0]["obs"].startswith("room 0\n</script><!--")
    assert not any(token in html for token in ("{{TITLE}}", "{{CSS}}", "{{JS}}", "{{DATA}}"))


def test_replay_ships_memory_changes_that_rebuild_each_step(tmp_path):
    _episode(tmp_path, 0)
    steps = build_payload(str(tmp_path), ReportConfig())["replay"][0]["steps"]
    files: dict[str, str] = {}
    seen = []
    for s in steps:
        for name, ch in s["mem"].items():
            files[name] = ch["f"] if "f" in ch else files.get(name, "") + ch["a"]
        seen.append(dict(files))
    assert [list(s["mem"]["notes.md"]) for s in steps] == [["f"], ["a"], ["f"], ["a"]]
    assert seen[1]["notes.md"] == "seen room 0\nseen room 1\n"
    assert seen[3]["notes.md"] == "only this\nseen room 3\n"
    plan = [t for t in steps[1]["turns"] if t["phase"] == "plan"][0]
    assert (
        plan["ops"][0]["out"] == "notes.md:1: seen room 0\nnotes.md:2: seen room 1"
    )  # re-run on rebuilt memory
    assert plan["ops"][0]["src"] == [[0, 0], [1, 1]]  # each line found, with the step of the write behind it
    plan = [t for t in steps[3]["turns"] if t["phase"] == "plan"][0]
    assert plan["ops"][0]["src"] == [[0, 3]]  # after the rewrite at step 2, only step 3's line has "room"
    log = [t for t in steps[1]["turns"] if t["phase"] == "log"][0]
    assert "src" not in log["ops"][0]  # writes carry no provenance of their own


def test_caps_sample_the_replay_and_say_so(tmp_path, capsys):
    for i in range(6):
        _episode(tmp_path, i, n=30)
    payload = build_payload(str(tmp_path), ReportConfig(max_replay=3))
    assert len(payload["replay"]) == 3 and len(payload["episodes"]) == 6
    assert "3 of 6 episodes, sampled at random" in payload["notes"][0]
    small = build_payload(str(tmp_path), ReportConfig(max_replay=6, max_bytes=100_000))
    assert 0 < len(small["replay"]) < 6 and any("left out of the replay" in n for n in small["notes"])
    assert len(render_html(small).encode()) <= 100_000  # the whole page, not only its data
    out = tmp_path / "sel.html"
    assert (
        main(["report", str(tmp_path), "--out", str(out), "--episodes", "run1/ep-01,ep-02", "--by", "env"])
        == 0
    )
    assert "2 episodes, 2 in the replay, 2 in the episode table" in capsys.readouterr().out
    data = _data(out.read_text())
    assert sorted(r["id"] for r in data["replay"]) == ["run1/ep-01", "run1/ep-02"]
    assert [g["label"] for g in data["groups"]] == ["corridor-v0"]
    assert set(data["plots"]) == {"progression", "memory", "op_mix", "errors"}
    assert data["plots"]["op_mix"]["corridor-v0"] == {"APPEND": 58, "SEARCH": 60, "WRITE": 2}


def test_the_size_cap_holds_for_the_whole_page_and_the_page_says_what_it_sampled(
    tmp_path, capsys, monkeypatch
):
    import automem.report.data as data

    monkeypatch.setattr(data, "_STRIP_POINTS", 20)  # the progression plot's sample, small for a small store
    for i in range(60):
        write_episode(
            tmp_path,
            "run1",
            f"ep-{i:03d}",
            [Step("o", log=[f"APPEND n.md fact {i}"], progression=i / 60)],
            seed=i,
        )
    out = tmp_path / "capped.html"
    assert main(["report", str(tmp_path), "--out", str(out), "--max-mb", "0.045", "--max-replay", "60"]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size <= 45_000
    data_ = _data(out.read_text())
    assert data_["n_episodes"] == 60 and data_["groups"][0]["episodes"] == 60  # the diagnostics cover all
    listed = len(data_["episodes"])
    assert 0 < listed < 60 and f"lists {listed} of 60 episodes, sampled at random" in " ".join(data_["notes"])
    assert len(data_["plots"]["progression"]["s0 / m"]) == 20
    assert any("progression plot draws a random sample of 20" in n for n in data_["notes"])
    assert 0 < len(data_["replay"]) < 60 and any("left out of the replay" in n for n in data_["notes"])
    assert f"{listed} in the episode table" in printed and "note: The episode table lists" in printed
    # A cap below the page without any episode is refused, with the size it would need.
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "tiny.html"), "--max-mb", "0.01"]) == 2
    assert "raise --max-mb" in capsys.readouterr().err and not (tmp_path / "tiny.html").exists()
    for bad in (["--max-replay", "-1"], ["--max-mb", "0"]):
        assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.html"), *bad]) == 2
        assert "error:" in capsys.readouterr().err
