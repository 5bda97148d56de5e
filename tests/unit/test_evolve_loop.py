# Run: RAY_AUTH_MODE=disabled .venv/bin/python -m pytest tests/unit/test_evolve_loop.py -q
"""The Loop 1 run (``automem.evolve.loop``) and its reviewers, without rollouts: ``play`` writes hand-built episodes
whose progression depends on the scaffold, so decisions are known. Also the ``openai`` reviewer against a local
HTTP server that answers well, with garbage, too slowly or with an error."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from automem.evolve.lineage import read_rows
from automem.evolve.loop import Evolve, EvolveConfig, EvolveError
from automem.evolve.patch import apply_patch
from automem.evolve.reviewers import (
    OpenAIReviewer,
    Review,
    ReviewerError,
    ReviewRequest,
    RulesReviewer,
    make_reviewer,
)
from automem.evolve.rules import Evidence
from automem.scaffold import from_yaml, load
from automem.scaffold.io import content_id
from automem.trajectory import connect
from automem.trajectory.storage import Storage
from tests.support.synthetic import Step, write_episode

TOY = """
id: corridor-toy
env: corridor
prompts: {system: Walk right., log: "LOG: record.", plan: "PLAN: read.", action: Act.}
files:
  - {name: notes.md, purpose: what you saw, initial: "start\\n"}
  - {name: route.md, purpose: the way}
operations: [LIST, READ, APPEND, UPSERT]
"""


class FakePlay:
    """Writes one episode per seed: READ route.md each step, the same note appended every step; progression 0.9
    when route.md starts with content and the prompt does not ask for keyed files, else 0.1 + (seed % 10)/100."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.calls: list[str] = []
        self.played: list[str] = []

    def __call__(self, scaffold, seeds: str, run_id: str) -> None:
        from automem.rollout import parse_seeds

        self.calls.append(run_id)
        from automem.trajectory.runs import committed_episode_ids

        if committed_episode_ids(
            Storage(self.root), run_id
        ):  # as a resume of a complete run: nothing to play
            return
        self.played.append(run_id)
        route = next((f for f in scaffold.files if f.name == "route.md"), None)
        good = route is not None and route.initial and "UPSERT" not in scaffold.files[0].purpose
        initial = {f.name: f.initial for f in scaffold.files if f.initial}
        for seed in parse_seeds(seeds):
            steps = [
                Step(
                    f"at {t}", "right", log=["APPEND notes.md the corridor runs east"], plan=["READ route.md"]
                )
                for t in range(4)
            ]
            prog = 0.9 if good else 0.1 + (seed % 10) / 100
            write_episode(
                self.root, run_id, f"e{seed}", steps, seed=seed, initial_files=initial, progression=prog
            )


def _evolve(tmp_path, reviewer=None, **kw) -> tuple[Evolve, FakePlay]:
    (tmp_path / "toy.yaml").write_text(TOY)
    root = str(tmp_path / "store")
    settings = {"tune_seeds": "0-7", "holdout_seeds": "100-107", "iterations": 2, **kw}
    config = EvolveConfig(out=root, env="corridor-v0", scaffold=str(tmp_path / "toy.yaml"), **settings)
    play = FakePlay(root)
    return Evolve(config, reviewer or RulesReviewer(), play), play


def test_a_good_patch_is_accepted_a_bad_one_rejected_and_both_are_in_the_lineage(tmp_path):
    ev, play = _evolve(tmp_path)
    result = ev.run()
    decisions = [(r["iteration"], r["decision"], r["rule"]) for r in result.rows]
    assert decisions == [(0, "start", None), (1, "accepted", "missing_file"), (2, "rejected", "keyed_file")]
    acc, rej = result.rows[1], result.rows[2]
    assert acc["mean_diff"] > 0.7 and acc["lower"] > 0 and acc["p_value"] <= 0.05 and acc["n_seeds"] == 8
    assert rej["mean_diff"] < 0 and rej["parent_content_id"] == acc["content_id"]
    assert result.final == acc["content_id"] and rej["current_content_id"] == acc["content_id"]
    assert acc["diff"] and acc["digest_tokens"] <= acc["digest_budget"]
    # Each scaffold's tuning run is one run, however many iterations the scaffold stays in force.
    assert play.played == [acc["parent_run"], acc["candidate_run"], rej["candidate_run"], *play.played[3:]]
    assert rej["parent_run"] == acc["candidate_run"]
    assert result.holdout is not None and result.holdout["mean_diff"] > 0.7
    con = connect(str(tmp_path / "store"))
    try:
        got = con.sql("SELECT iteration, decision FROM lineage ORDER BY iteration").fetchall()
    finally:
        con.close()
    assert got == [(0, "start"), (1, "accepted"), (2, "rejected")]
    # Every scaffold in the lineage is valid, and the final one is what the last accepted row holds.
    for r in result.rows:
        from_yaml(r["scaffold_yaml"]) if r["scaffold_yaml"] else None
    assert content_id(from_yaml(result.final_yaml)) == result.final


def test_a_stopped_run_resumes_without_replaying_finished_iterations(tmp_path):
    ev, play = _evolve(tmp_path, iterations=1)
    first = ev.run()
    assert [r["decision"] for r in first.rows] == ["start", "accepted"]
    again, play2 = _evolve(tmp_path, iterations=2)
    result = again.run()
    assert [r["decision"] for r in result.rows] == ["start", "accepted", "rejected"]
    assert result.rows[1]["created_at"] == first.rows[1]["created_at"]
    assert first.rows[1]["parent_run"] not in play2.calls  # iteration 1's parent was not asked for again


def test_a_run_declared_differently_is_refused(tmp_path):
    _evolve(tmp_path, iterations=0)[0].run()
    with pytest.raises(EvolveError, match="tune_seeds"):
        (tmp_path / "toy.yaml").write_text(TOY)
        Evolve(
            EvolveConfig(
                out=str(tmp_path / "store"),
                env="corridor-v0",
                scaffold=str(tmp_path / "toy.yaml"),
                tune_seeds="0-3",
                iterations=1,
            ),
            RulesReviewer(),
            FakePlay(str(tmp_path / "store")),
        ).run()


class Scripted:
    """A reviewer answering from a list; an entry that is an exception is raised."""

    name = "scripted"

    def __init__(self, answers) -> None:
        self.answers = list(answers)
        self.counter = RulesReviewer().counter
        self.digest_budget = 500
        self.requests: list[ReviewRequest] = []

    def review(self, request: ReviewRequest) -> Review:
        self.requests.append(request)
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


def test_reviewer_failures_and_bad_patches_are_recorded_and_the_loop_goes_on(tmp_path):
    answers = [
        Review(None, error="timeout after 300 s"),
        RuntimeError("reviewer bug"),
        Review("{not json"),
        Review({"operations": ["READ", "TELEPORT"]}),
        Review({"context": {"max_prompt_tokens": 256}, "prompts": {"system": "x " * 2000}}),
        Review(None, rationale="nothing to say"),
    ]
    ev, play = _evolve(tmp_path, reviewer=Scripted(answers), iterations=6, holdout_seeds=None)
    result = ev.run()
    rows = result.rows[1:]
    assert [r["decision"] for r in rows] == [
        "reviewer_error",
        "reviewer_error",
        "invalid_patch",
        "invalid_patch",
        "invalid_patch",
        "no_proposal",
    ]
    assert "timeout" in rows[0]["reason"] and "reviewer bug" in rows[1]["reason"]
    assert [r["reject_kind"] for r in rows[2:5]] == ["unparseable", "unknown_operation", "over_budget"]
    assert all(r["scaffold_yaml"] is None for r in rows)  # nothing invalid was ever written as a scaffold
    assert result.final == result.start and len(play.played) == 1  # only the start was played
    assert ev.reviewer.requests[-1].tried == frozenset({result.start})


def test_a_candidate_already_gated_is_not_played_again(tmp_path):
    ev, _ = _evolve(tmp_path, iterations=2, holdout_seeds=None)
    first = ev.run()
    gated = json.loads(
        first.rows[2]["patch_json"]
    )  # the rejected keyed-file patch, against the accepted scaffold
    again, play = _evolve(tmp_path, reviewer=Scripted([Review(gated)]), iterations=3, holdout_seeds=None)
    row = again.run().rows[3]
    assert row["decision"] == "duplicate" and row["content_id"] == first.rows[2]["content_id"]
    assert first.rows[2]["candidate_run"] not in play.played


# --- the openai reviewer over HTTP ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"
    bodies: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # /models
        self._json(200, {"data": [{"id": "m"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.bodies.append(body)
        if self.mode == "slow":
            import time

            time.sleep(2)
        if self.mode == "error":
            return self._json(500, {"error": "boom"})
        content = {"ok": '{"quotas": {"max_ops_per_turn": 2}, "rationale": "fewer"}', "garbage": "lol"}.get(
            self.mode, "{}"
        )
        self._json(200, {"choices": [{"message": {"content": content}}], "usage": {"prompt_tokens": 5}})

    def _json(self, code: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", _Handler
    httpd.shutdown()


def _request() -> ReviewRequest:
    return ReviewRequest(load("crafter-v0"), "digest text", Evidence())


@pytest.mark.parametrize(
    "mode, error",
    [("ok", None), ("garbage", "unparseable"), ("error", "HTTP 500"), ("slow", "timeout")],
)
def test_openai_reviewer_answers_or_records_what_went_wrong(server, mode, error):
    url, handler = server
    handler.mode = mode
    review = OpenAIReviewer("m", url, timeout_s=0.5).review(_request())
    if error is None:
        assert review.error is None and review.rationale == "fewer"
        body = handler.bodies[-1]
        assert body["response_format"]["type"] == "json_schema"
        assert "quotas" in body["response_format"]["json_schema"]["schema"]["properties"]
        assert "digest text" in body["messages"][1]["content"]
    else:
        assert review.error is not None and error in review.error


def test_openai_reviewer_fits_its_digest_to_the_context():
    r = OpenAIReviewer("m", "http://127.0.0.1:9", context_window=4096, max_tokens=400)
    assert 0 < r.fit(load("crafter-v0")) < 4096 - 400


def test_bad_reviewer_specs_fail_before_anything_runs(server, monkeypatch):
    url, _ = server
    with pytest.raises(ReviewerError, match="unknown reviewer"):
        make_reviewer("gpt")
    with pytest.raises(ReviewerError, match="not reachable"):
        make_reviewer("openai:m@http://127.0.0.1:9/v1")
    with pytest.raises(ReviewerError, match="serves m, not other"):
        make_reviewer(f"openai:other@{url}")
    assert make_reviewer(f"openai:m@{url}").name == f"openai:m@{url}"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ReviewerError, match="ANTHROPIC_API_KEY|not installed"):
        make_reviewer("anthropic:claude-x")
    with pytest.raises(ReviewerError, match="model name"):
        make_reviewer("anthropic:")


def test_storage_listing_of_an_empty_store_has_no_lineage(tmp_path):
    from automem.evolve.lineage import lineage_files

    assert lineage_files(Storage(str(tmp_path))) == [] and read_rows(Storage(str(tmp_path)), "x") == []


def test_anthropic_reviewer_reads_the_patch_from_its_tool_call(monkeypatch):
    """The SDK is faked at its client: the reviewer sends the patch schema as the one tool, and reads its input."""
    anthropic = pytest.importorskip("anthropic")
    from types import SimpleNamespace

    from automem.evolve.reviewers import AnthropicReviewer

    sent: dict = {}

    class FakeMessages:
        def create(self, **kw):
            sent.update(kw)
            block = SimpleNamespace(
                type="tool_use", input={"turns": {"plan_turns": 2}, "rationale": "read more"}
            )
            return SimpleNamespace(content=[SimpleNamespace(type="text", text="thinking"), block])

    class FakeClient:
        def __init__(self, api_key: str) -> None:
            self.messages = FakeMessages()

    monkeypatch.setattr(anthropic, "Anthropic", FakeClient)
    review = AnthropicReviewer("claude-x", api_key="k").review(_request())
    assert review.error is None and review.rationale == "read more"
    assert sent["tool_choice"] == {"type": "tool", "name": "patch"}
    assert "turns" in sent["tools"][0]["input_schema"]["properties"]

    class Failing(FakeMessages):
        def create(self, **kw):
            raise RuntimeError("overloaded")

    monkeypatch.setattr(anthropic, "Anthropic", lambda api_key: SimpleNamespace(messages=Failing()))
    assert "overloaded" in AnthropicReviewer("claude-x", api_key="k").review(_request()).error


def test_with_nothing_accepted_the_held_out_seeds_score_the_start_alone(tmp_path):
    ev, play = _evolve(tmp_path, reviewer=Scripted([Review(None)]), iterations=1)
    result = ev.run()
    h = result.holdout
    assert h is not None and h["final"] == h["start"] == "corridor-toy" and "mean_b" not in h
    assert h["n"] == 8 and abs(h["mean_a"] - 0.135) < 1e-9 and h["lo"] <= h["mean_a"] <= h["hi"]
    assert play.played[-1].endswith("-holdout")
    # A rejected candidate can be checked on the held-out seeds too (the experiment does).
    cand = apply_patch(ev.start, {"quotas": {"max_ops_per_turn": 1}}).scaffold
    check = ev.score_holdout(cand)
    assert check["n"] == 8 and check["final"] == cand.id and check["mean_diff"] == 0
