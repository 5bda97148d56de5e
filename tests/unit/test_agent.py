# Run: .venv/bin/python -m pytest tests/unit/test_agent.py
"""The LOG/PLAN agent on a small fake game with a scripted model: routing, grammars, the invariant."""

from __future__ import annotations

import asyncio
import re

import pytest

from automem.agent import Agent, EpisodeEnd, ModelRoute, StepEvent, TurnEvent, parse_action
from automem.envs.fake import CorridorEnv
from automem.llm import ApproxTokenCounter, ScriptedChatModel, count_messages
from automem.llm.fake import phase_of
from automem.memory import OpRecord, replay
from automem.scaffold import load


def scaffold(**update):
    base = load("crafter-v0")
    return base.model_copy(update={"default_action": "wait", **update})


def good_script(call) -> str:
    """A well-behaved model: logs the observation, searches memory, walks right."""
    phase = phase_of(call)
    if phase == "log":
        return "APPEND notes.md moved along the corridor\nUPSERT state.md position known\nDONE"
    if phase == "plan":
        return "SEARCH corridor notes.md\nDONE"
    return "right"


class RecordingEnv(CorridorEnv):
    def __init__(self, timeline, **kw):
        super().__init__(**kw)
        self.timeline = timeline

    def step(self, action):
        out = super().step(action)
        self.timeline.append(("env.step", self._steps - 1, out[0]))
        return out


def play(agent, tmp_path, env=None, max_steps=10, seed=0):
    events: list = []
    env = env or CorridorEnv(length=5, max_steps=30)
    end = asyncio.run(
        agent.run_episode(
            env,
            seed=seed,
            episode_id="ep1",
            memory_root=tmp_path / "mem",
            max_steps=max_steps,
            on_event=events.append,
        )
    )
    return end, events


def test_one_model_constrained_episode(tmp_path):
    model = ScriptedChatModel(good_script)  # asserts each reply matches the grammar the request carried
    agent = Agent(scaffold(), memory=ModelRoute(model, "base"))
    end, events = play(agent, tmp_path)
    assert isinstance(end, EpisodeEnd) and end.terminated and end.progression == 1.0
    assert end.steps == 4 and end.invalid_actions == 0
    assert {c.model for c in model.calls} == {"base"}
    by_phase = {}
    for c in model.calls:
        by_phase.setdefault(phase_of(c), set()).add(c.constraint.regex)
    assert len(by_phase["log"]) == len(by_phase["plan"]) == len(by_phase["action"]) == 1
    log_re, plan_re, action_re = (next(iter(by_phase[p])) for p in ("log", "plan", "action"))
    assert "APPEND" in log_re and "APPEND" not in plan_re and "SEARCH" in plan_re
    assert re.fullmatch(action_re, "right") and not re.fullmatch(action_re, "jump")
    turns = [e for e in events if isinstance(e, TurnEvent)]
    assert [t.phase for t in turns[:3]] == ["log", "plan", "action"]
    assert all(t.constraint for t in turns)
    # The op log replays to the final memory.
    records = [e for e in events if isinstance(e, OpRecord)]
    assert replay(records) == end.memory_files
    assert end.memory_files["notes.md"].count("moved along the corridor") == 4


def test_two_model_routing(tmp_path):
    specialist, base = ScriptedChatModel(good_script), ScriptedChatModel(good_script)
    agent = Agent(
        scaffold(),
        memory=ModelRoute(specialist, "smollm2-135m:mem-v1"),
        action=ModelRoute(base, "smollm2-135m"),
    )
    end, events = play(agent, tmp_path)
    assert end.terminated
    assert {phase_of(c) for c in specialist.calls} == {"log", "plan"}
    assert {phase_of(c) for c in base.calls} == {"action"}
    assert {c.model for c in specialist.calls} == {"smollm2-135m:mem-v1"}
    assert {c.model for c in base.calls} == {"smollm2-135m"}
    turns = [e for e in events if isinstance(e, TurnEvent)]
    assert {t.model for t in turns if t.phase == "action"} == {"smollm2-135m"}
    assert {t.model for t in turns if t.phase != "action"} == {"smollm2-135m:mem-v1"}


def test_free_mode_sends_no_grammar_and_tolerates_prose(tmp_path):
    def chatty(call):
        phase = phase_of(call)
        if phase == "log":
            return "Sure! Here is my note:\n```\nappend notes.md walked right\n```"
        if phase == "plan":
            return "Let me check.\nREAD notes.md"
        return "I will go **right**."

    model = ScriptedChatModel(chatty)
    agent = Agent(scaffold(constrained=False), memory=ModelRoute(model, "base"))
    end, events = play(agent, tmp_path)
    assert all(c.constraint is None for c in model.calls)
    assert end.terminated and end.invalid_actions == 0
    turns = [e for e in events if isinstance(e, TurnEvent) and e.phase == "log"]
    assert turns[0].results[0]["error_kind"] == "parse"  # the prose line
    assert turns[0].results[1]["op"] == "APPEND" and turns[0].results[1]["ok"]
    assert end.op_errors >= 4


def test_invalid_action_falls_back_and_is_counted(tmp_path):
    model = ScriptedChatModel(lambda c: "DONE" if phase_of(c) != "action" else "fly away")
    agent = Agent(scaffold(constrained=False), memory=ModelRoute(model, "base"))
    end, events = play(agent, tmp_path, max_steps=3)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert end.invalid_actions == 3 and end.steps == 3
    assert all(s.action == "wait" and not s.action_valid for s in steps)
    assert "was not a valid action" in model.calls[-1].messages[1]["content"]


def test_log_plan_invariant(tmp_path):
    """Writes happen only in LOG, and the LOG of step t runs after the env answered action t-1."""
    timeline: list = []

    def script(call):
        phase = phase_of(call)
        timeline.append(("call", phase, call.messages[1]["content"]))
        if phase == "plan":  # a model that tries to write while planning
            return "APPEND notes.md I will surely win\nDONE"
        return good_script(call)

    model = ScriptedChatModel(script, check_constraint=False)
    agent = Agent(scaffold(constrained=False), memory=ModelRoute(model, "base"))
    env = RecordingEnv(timeline, length=5, max_steps=30)
    events: list = []

    def on_event(e):
        events.append(e)
        if isinstance(e, OpRecord) and not e.read_only and e.ok:
            timeline.append(("write", e.step, e.phase))

    end = asyncio.run(
        agent.run_episode(
            env, seed=0, episode_id="e", memory_root=tmp_path / "m", max_steps=10, on_event=on_event
        )
    )
    writes = [x for x in timeline if x[0] == "write" and x[2] != "init"]
    assert writes and all(phase == "log" for _, _, phase in writes)
    assert "I will surely win" not in "".join(end.memory_files.values())
    refused = [e for e in events if isinstance(e, OpRecord) and e.phase == "plan" and e.op == "APPEND"]
    assert refused and all(r.error_kind == "read_only" for r in refused)
    for pos, item in enumerate(timeline):
        if item[0] == "write" and item[1] > 0:
            t = item[1]
            answered = [i for i, x in enumerate(timeline) if x[0] == "env.step" and x[1] == t - 1]
            assert answered and answered[0] < pos, f"write at step {t} before the env answered step {t - 1}"
    # The LOG prompt of step t shows the observation the env returned for action t-1.
    env_obs = [x[2] for x in timeline if x[0] == "env.step"]
    log_prompts = [x[2] for x in timeline if x[0] == "call" and x[1] == "log"]
    for t in range(1, len(log_prompts)):
        assert env_obs[t - 1] in log_prompts[t]


def test_every_prompt_shares_the_static_prefix(tmp_path):
    model = ScriptedChatModel(good_script)
    agent = Agent(scaffold(), memory=ModelRoute(model, "base"))
    _, events = play(agent, tmp_path)
    systems = {c.messages[0]["content"] for c in model.calls}
    assert len(systems) == 1
    system = systems.pop()
    assert "## Memory operations" in system and "## Game actions" in system and "right:" in system
    assert "Step" not in system and "Observation" not in system  # nothing dynamic in the prefix
    # Two steps' LOG prompts differ only after the static prefix.
    logs = [c.messages for c in model.calls if phase_of(c) == "log"]
    assert logs[0][0] == logs[1][0] and logs[0][1] != logs[1][1]
    assert len({e.prefix_hash for e in events if isinstance(e, TurnEvent)}) == 1


def test_prompts_fit_the_token_budget(tmp_path):
    class BigEnv(CorridorEnv):
        def _obs(self, message):
            return super()._obs(message) + "\n" + "rock " * 3000

    counter = ApproxTokenCounter()
    sc = load("crafter-v0")
    sc = sc.model_copy(
        update={
            "default_action": "wait",
            "context": sc.context.model_copy(
                update={"max_prompt_tokens": 1200, "max_observation_chars": 20000}
            ),
        }
    )
    model = ScriptedChatModel(
        lambda c: (
            "APPEND notes.md " + "x" * 100 + "\nDONE"
            if phase_of(c) == "log"
            else ("READ notes.md\nDONE" if phase_of(c) == "plan" else "right")
        )
    )
    agent = Agent(sc, memory=ModelRoute(model, "base"), counter=counter)
    play(agent, tmp_path, env=BigEnv(length=5, max_steps=30))
    for call in model.calls:
        assert count_messages(counter, call.messages) <= 1200 + 60  # the action instruction is appended last


def test_scaffold_that_cannot_fit_the_window_is_refused():
    sc = load("crafter-v0")
    with pytest.raises(ValueError, match="context window"):
        Agent(sc, memory=ModelRoute(ScriptedChatModel(["DONE"]), "m"), context_window=2048)


def test_parse_action():
    names = ["noop", "move_left", "move", "place_stone"]
    assert parse_action("move_left", names) == 1
    assert parse_action("  MOVE_LEFT.\n", names) == 1
    assert parse_action("I choose place_stone now", names) == 3
    assert parse_action("move", names) == 2
    assert parse_action("jump", names) is None
    assert parse_action("", names) is None


def test_no_plan_turns_and_no_log_turns(tmp_path):
    sc = scaffold()
    sc = sc.model_copy(update={"turns": sc.turns.model_copy(update={"plan_turns": 0, "log_turns": 0})})
    model = ScriptedChatModel(lambda c: "right")
    agent = Agent(sc, memory=ModelRoute(model, "base"))
    end, _ = play(agent, tmp_path)
    assert end.terminated and end.turns == 4  # only action commits
    assert all(phase_of(c) == "action" for c in model.calls)
    assert all(len(c.messages) == 2 for c in model.calls)


def test_free_mode_two_model_routing(tmp_path):
    def specialist_script(call):
        if phase_of(call) == "log":
            return "Noted.\nappend notes.md walked right\nDONE"
        return "SEARCH walked notes.md"

    specialist = ScriptedChatModel(specialist_script)
    base = ScriptedChatModel(lambda c: "I will go **right**.")
    agent = Agent(
        scaffold(constrained=False),
        memory=ModelRoute(specialist, "smollm2-135m:mem-v1"),
        action=ModelRoute(base, "smollm2-135m"),
    )
    end, events = play(agent, tmp_path)
    assert end.terminated and end.invalid_actions == 0 and end.steps == 4
    assert all(c.constraint is None for c in specialist.calls + base.calls)
    assert [phase_of(c) for c in specialist.calls] == ["log", "plan"] * 4
    assert [phase_of(c) for c in base.calls] == ["action"] * 4
    assert {c.model for c in specialist.calls} == {"smollm2-135m:mem-v1"}
    assert {c.model for c in base.calls} == {"smollm2-135m"}
    turns = [e for e in events if isinstance(e, TurnEvent)]
    assert [(t.phase, t.model) for t in turns[:3]] == [
        ("log", "smollm2-135m:mem-v1"),
        ("plan", "smollm2-135m:mem-v1"),
        ("action", "smollm2-135m"),
    ]
    assert all(t.constraint is None for t in turns)
    # The action model sees what the specialist's PLAN turn found.
    assert "notes.md:2: walked right" in base.calls[0].messages[-1]["content"]
    assert end.memory_files["notes.md"].count("walked right") == 4


def test_every_prompt_fits_the_budget_with_several_turns_per_phase(tmp_path):
    """Four LOG and four PLAN turns per step, each writing or reading a lot: every prompt, the action commit's
    included, stays within max_prompt_tokens, and the system message is never cut."""

    class BigEnv(CorridorEnv):
        def _obs(self, message):
            return super()._obs(message) + "\n" + "rock " * 3000

    counter, budget = ApproxTokenCounter(), 1200
    sc = load("crafter-v0")
    sc = sc.model_copy(
        update={
            "default_action": "wait",
            "context": sc.context.model_copy(
                update={"max_prompt_tokens": budget, "max_observation_chars": 20000}
            ),
            "turns": sc.turns.model_copy(update={"log_turns": 4, "plan_turns": 4}),
        }
    )

    def script(call):
        if "Choose your next action" in call.messages[-1]["content"]:
            return "right"
        if "PLAN:" in call.messages[1]["content"]:
            return "READ notes.md\nSEARCH x *\nDONE"
        return "APPEND notes.md " + "x" * 110 + "\nSEARCH x *\nTAIL notes.md 9\nDONE"

    model = ScriptedChatModel(script)
    agent = Agent(sc, memory=ModelRoute(model, "base"), counter=counter)
    _, events = play(agent, tmp_path, env=BigEnv(length=5, max_steps=30))
    turns = [e for e in events if isinstance(e, TurnEvent)]
    per_step = [(t.phase, t.turn) for t in turns if t.step == 1]
    assert per_step == [("log", k) for k in range(4)] + [("plan", k) for k in range(4)] + [("action", 0)]
    system = model.calls[0].messages[0]["content"]
    for call in model.calls:
        assert count_messages(counter, call.messages) <= budget
        assert call.messages[0]["content"] == system
    assert all(t.prompt_tokens_est <= budget for t in turns)
    # Later turns still show the latest results, and the commit the last PLAN turn's.
    for call in model.calls[1:]:
        if len(call.messages) > 2:
            assert call.messages[-1]["content"].startswith("Results:\n[READ notes.md]") or call.messages[-1][
                "content"
            ].startswith("Results:\n[APPEND notes.md")
