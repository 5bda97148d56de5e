# Run: .venv/bin/python -m pytest tests/integration/test_report_browser.py
"""The HTML report in a real headless Chromium (Debian's; `make install-browser`), driven over the DevTools
protocol: it renders without console errors or network requests, the replay steps forward on a mouse click,
the memory view changes, and lines a read returned name the step of the write behind them (provenance). A
screenshot is kept at artifacts/report_replay.png.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import pathlib
import subprocess
import tempfile
import time

import pytest

from automem.agent import Agent, ModelRoute
from automem.envs.fake import CorridorEnv
from automem.llm import ScriptedChatModel
from automem.llm.fake import step_script
from automem.report import ReportConfig, write_report
from automem.scaffold import load
from automem.trajectory import EpisodeWriter, Storage

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1400,1800",
]


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's WebSocket (commands in, events collected)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == msg_id:
                assert "error" not in msg, (method, msg["error"])
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (not a synthetic JS click)."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium with a fresh profile; yields a DevTools client attached to its blank page."""
    assert os.path.exists(CHROMIUM), "Chromium is missing: `make install-browser` installs Debian's chromium"
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
        assert proc.poll() is None, "chromium exited at start"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    import httpx
    from websockets.sync.client import connect

    pages = [
        t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"
    ]
    try:
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            yield DevTools(ws)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


_script = step_script("right", "moved right at some step")


def _store(root: pathlib.Path, seeds: int = 2, memory_model: str = "m", run: str = "run1") -> None:
    """Real agent episodes (scripted model, corridor env) written through the trajectory writer."""
    storage = Storage(str(root))
    sc = load("crafter-v0").model_copy(update={"default_action": "wait"})
    for i in range(seeds):
        agent = Agent(sc, memory=ModelRoute(ScriptedChatModel(_script), "m"))
        meta = {
            "env_id": "corridor-v0",
            "seed": i,
            "scaffold_id": "crafter-v0",
            "scaffold_content_id": "x",
            "memory_model": memory_model,
            "action_model": "m",
        }
        writer = EpisodeWriter(storage, run, f"ep-{i}", 1, meta)
        env = CorridorEnv(length=12, max_steps=50)
        with tempfile.TemporaryDirectory() as tmp:
            end = asyncio.run(
                agent.run_episode(
                    env,
                    seed=i,
                    episode_id=f"ep-{i}",
                    memory_root=tmp + "/m",
                    max_steps=6,
                    on_event=writer.on_event,
                )
            )
        writer.commit(end, agent.system_prompt(env))


def test_report_renders_and_replay_steps_through_memory(tmp_path, chromium):
    _store(tmp_path / "store")
    out = tmp_path / "report.html"
    info = write_report(str(tmp_path / "store"), out, ReportConfig())
    assert info["replayed"] == 2
    cdp = chromium
    for domain in ("Runtime", "Log", "Network", "Page"):
        cdp.send(f"{domain}.enable")
    cdp.send("Page.navigate", url=out.as_uri())
    cdp.wait_for("Page.loadEventFired")
    assert cdp.js("document.body.getAttribute('data-ready')") == "1"
    assert cdp.js("document.querySelectorAll('#plots svg').length") == 4
    assert cdp.js("document.querySelectorAll('#diag-table tr').length") > 10

    memory = [cdp.js("document.getElementById('memory').innerText")]
    labels = [cdp.js("document.getElementById('step-label').textContent")]
    sources = "[...document.querySelectorAll('#turns .turn.plan .src')].map(e => e.textContent.trim())"
    found = [cdp.js(sources)]
    for _ in range(3):
        cdp.click("#next")
        labels.append(cdp.js("document.getElementById('step-label').textContent"))
        memory.append(cdp.js("document.getElementById('memory').innerText"))
        found.append(cdp.js(sources))
    assert labels[:2] == ["step 0 (1 of 6)", "step 1 (2 of 6)"] and labels[3] == "step 3 (4 of 6)"
    # Each LOG turn appends one line, so the rebuilt memory grows by one line per step.
    assert all(a != b for a, b in itertools.pairwise(memory)), memory
    assert memory[3].count("moved right at some step") == memory[0].count("moved right at some step") + 3
    # Each PLAN turn searches the notes: every line found is the APPEND of an earlier (or this) step's LOG turn.
    assert found[0] == ["\u2190 written at step 0"]
    assert found[3] == [f"\u2190 written at step {t}" for t in range(4)]

    shot = cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "report_replay.png").write_bytes(base64.b64decode(shot["data"]))

    errors = [
        e
        for e in cdp.events
        if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors
    urls = [
        e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls


def _load(cdp, page):
    """Open ``page`` in the browser and wait until the report has drawn itself (``data-ready``)."""
    for domain in ("Runtime", "Page"):
        cdp.send(f"{domain}.enable")
    cdp.send("Page.navigate", url=page.as_uri())
    cdp.wait_for("Page.loadEventFired")
    assert cdp.js("document.body.getAttribute('data-ready')") == "1"
    return cdp


def test_report_comparison_page_shows_each_measure_with_its_interval(tmp_path, chromium):
    from automem.diagnostics.summary import MEASURES

    _store(tmp_path / "store", seeds=3, memory_model="base")
    _store(tmp_path / "store", seeds=3, memory_model="base:spec", run="run2")
    out = tmp_path / "compare.html"
    write_report(str(tmp_path / "store"), out, ReportConfig(compare="memory_model", baseline="base"))
    cdp = _load(chromium, out)
    assert cdp.js("document.getElementById('comparison').hidden") is False
    rows = cdp.js("[...document.querySelectorAll('#compare-table tr')].map(r => r.innerText)")
    assert len(rows) == 1 + len(MEASURES), rows
    assert all(r.split("\t")[:2] == ["base", "base:spec"] for r in rows[1:]), rows[:3]
    # The scripted model answers both the same way: every difference is exactly 0 (verdict same).
    assert all(r.split("\t")[-1] == "same" for r in rows[1:]), rows
    assert "paired by seed" in cdp.js("document.getElementById('compare-caption').textContent")


def test_report_lineage_tree_opens_a_node_to_its_diff(tmp_path, chromium):
    from automem.evolve.lineage import append_row

    _store(tmp_path / "store", seeds=1)
    st = Storage(str(tmp_path / "store"))
    append_row(
        st, {"evolve": "evo", "iteration": 0, "decision": "start", "scaffold_id": "s0", "content_id": "c0"}
    )
    diff = "--- s0\n+++ s1\n@@ -1 +1 @@\n-id: s0\n+id: s1 <b>x</b>\n"
    accepted = {"iteration": 1, "decision": "accepted", "scaffold_id": "s1", "content_id": "c1", "diff": diff}
    append_row(st, {"evolve": "evo", **accepted, "parent_content_id": "c0", "current_content_id": "c1"})
    out = tmp_path / "lineage.html"
    write_report(str(tmp_path / "store"), out, ReportConfig())
    cdp = chromium
    cdp.send("Runtime.enable")
    cdp.send("Page.enable")
    cdp.send("Page.navigate", url=out.as_uri())
    cdp.wait_for("Page.loadEventFired")
    assert cdp.js("document.getElementById('lineage').hidden") is False
    node = "#lineage li li > details[data-iteration='1']"  # the candidate, nested under the start
    assert cdp.js(f"document.querySelector({json.dumps(node)} + ' .dec').textContent") == "accepted"
    assert cdp.js(f"document.querySelector({json.dumps(node)}).open") is False
    cdp.click(node + " > summary")
    assert cdp.js(f"document.querySelector({json.dumps(node)}).open") is True
    shown = cdp.js(f"document.querySelector({json.dumps(node)} + ' pre.diff').textContent")
    assert shown == diff  # as text: the markup in the diff is not markup
    assert (
        cdp.js(f"document.querySelector({json.dumps(node)} + ' pre.diff .add').textContent")
        == "+id: s1 <b>x</b>\n"
    )


def test_report_branch_view_draws_each_branch_and_its_divergence(tmp_path, chromium, seeded_stub):
    from tests.unit.test_report_branches import STEP, make_branch_store

    make_branch_store(seeded_stub, str(tmp_path / "parent"), str(tmp_path / "b"))
    out = tmp_path / "branches.html"
    write_report(str(tmp_path / "b"), out, ReportConfig())
    cdp = _load(chromium, out)
    assert cdp.js("document.getElementById('branches').hidden") is False
    svg = "#branches svg.branch-svg[data-point='0']"
    arms = cdp.js(
        f"[...document.querySelectorAll({json.dumps(svg + ' .branch-line')})].map(e => e.dataset.arm)"
    )
    assert arms == ["control", "control", "change", "change"]
    assert cdp.js(f"document.querySelector({json.dumps(svg)}).getBoundingClientRect().height") > 50
    labels = cdp.js(f"[...document.querySelectorAll({json.dumps(svg + ' text')})].map(e => e.textContent)")
    assert "control c0" in labels and "change c1" in labels, labels
    assert sum("same actions as the parent" in t for t in labels) == 2, labels
    assert f"branched at step {STEP}" in labels
    # The edited memory changes what the stub answers: a dot at the change arm's first other action.
    steps = cdp.js(
        f"[...document.querySelectorAll({json.dumps(svg + ' circle.diverge')})].map(e => e.dataset.step)"
    )
    assert len(steps) == 2 and all(int(s) >= STEP for s in steps), steps
    assert (
        cdp.js("document.querySelectorAll('#branches table.branch-compare tr[data-arm=change]').length") == 3
    )
    errors = [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"]
    assert not errors, errors
