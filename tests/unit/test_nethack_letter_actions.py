# Run: .venv/bin/python -m pytest tests/unit/test_nethack_letter_actions.py
"""The agent offers NetHack's ``letter X`` actions only while the game asks for an item (issue 17, item 3)."""

from __future__ import annotations

import asyncio
import re

from automem.agent import Agent, ModelRoute, StepEvent, TurnEvent, parse_action
from automem.envs import make_env
from automem.llm import ScriptedChatModel
from automem.llm.fake import phase_of
from automem.scaffold import load


def test_the_agent_eats_the_knights_apple_through_its_letter(tmp_path):
    answers = iter(["eat", "letter g", "search"])

    def script(call) -> str:
        phase = phase_of(call)
        if phase == "log":
            return "DONE"
        if phase == "plan":
            return "DONE"
        return next(answers)

    model = ScriptedChatModel(script)  # checks each reply against the grammar its request carried
    agent = Agent(load("nethack-v0"), memory=ModelRoute(model, "base"))
    env = make_env("nethack-v0")
    events: list = []
    try:
        asyncio.run(
            agent.run_episode(
                env,
                seed=4,
                episode_id="ep",
                memory_root=tmp_path / "mem",
                max_steps=3,
                on_event=events.append,
            )
        )
    finally:
        env.close()
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.action for s in steps] == ["eat", "letter g", "search"]
    assert all(s.action_valid for s in steps)
    assert "g: 11 uncursed apples" in steps[2].observation.splitlines()
    actions = [e for e in events if isinstance(e, TurnEvent) and e.phase == "action"]
    grammars = [t.constraint for t in actions]
    assert not re.fullmatch(grammars[0], "letter g")  # no question yet: no letters
    assert re.fullmatch(grammars[1], "letter g") and re.fullmatch(grammars[1], "letter h")
    assert not re.fullmatch(grammars[2], "letter g")
    prompts = ["\n".join(m["content"] for m in t.messages) for t in actions]
    assert "besides the game actions\nletter g, letter h, letter a" in prompts[1]
    assert "letter g (12 uncursed apples)" in prompts[1]  # the observation's question line
    assert "besides the game actions" not in prompts[0] and "besides the game actions" not in prompts[2]
    # The system prompt (the cached static prefix) is the same at every step.
    assert len({c.messages[0]["content"] for c in model.calls}) == 1


def test_parse_action_tells_letters_apart_by_case():
    names = ["north", "letter g", "letter G"]
    assert parse_action("letter G", names) == 2
    assert parse_action("letter g", names) == 1
    assert parse_action("I type letter G now", names) == 2
    assert parse_action("LETTER G", names) == 1  # neither written in its own case: the first
    assert parse_action("North then letter g", names) == 0
