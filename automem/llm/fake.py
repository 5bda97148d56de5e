"""A scripted ``ChatModel`` for tests: replies from a list or a function, and records every request."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from automem.llm.protocol import DEFAULT_SAMPLING, ChatResult, OutputConstraint, SamplingParams


@dataclass
class RecordedCall:
    """One request the fake received."""

    messages: list[dict[str, str]]
    model: str
    sampling: SamplingParams
    constraint: OutputConstraint | None


Script = list[str] | Callable[[RecordedCall], str]


class ScriptedChatModel:
    """Answers with scripted texts, in order (cycling), or computed by a function of the request.

    Args:
        script: replies, or ``f(call) -> reply``.
        check_constraint: when a request carries a regex, assert the reply matches it in full (catches a test
            script that a real constrained server could never produce).
    """

    def __init__(self, script: Script, *, check_constraint: bool = True) -> None:
        self.script = script
        self.check_constraint = check_constraint
        self.calls: list[RecordedCall] = []

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        constraint: OutputConstraint | None = None,
    ) -> ChatResult:
        call = RecordedCall([dict(m) for m in messages], model, sampling, constraint)
        if callable(self.script):
            text = self.script(call)
        else:
            text = self.script[len(self.calls) % len(self.script)]
        self.calls.append(call)
        if self.check_constraint and constraint is not None and not re.fullmatch(constraint.regex, text):
            raise AssertionError(f"scripted reply {text!r} does not match the request's constraint")
        prompt_chars = sum(len(m["content"]) for m in messages)
        return ChatResult(
            text=text,
            prompt_tokens=prompt_chars // 4,
            completion_tokens=max(1, len(text) // 4),
            latency_s=0.0,
            model=model,
            finish_reason="stop",
        )


def phase_of(call: RecordedCall) -> str:
    """Which of the agent's prompts a request is (``log``, ``plan`` or ``action``), from the default scaffolds'
    instructions at the end of its last message."""
    last = call.messages[-1]["content"]
    if "Choose your next action" in last:
        return "action"
    return "plan" if "PLAN:" in last else "log"


def step_script(action: str, note: str) -> Callable[[RecordedCall], str]:
    """A script for one-turn LOG/PLAN agents (tests, fakes): LOG appends ``note`` to notes.md, PLAN searches for
    its first word, the action commit answers ``action``. Every reply fits the agent's constraints."""
    first = note.split()[0]

    def reply(call: RecordedCall) -> str:
        phase = phase_of(call)
        if phase == "action":
            return action
        if phase == "plan":
            return f"SEARCH {first} *\nDONE"
        return f"APPEND notes.md {note}\nDONE"

    return reply
