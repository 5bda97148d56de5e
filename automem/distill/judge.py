"""The optional ``judge`` strategy: a model grades each candidate memory turn (off unless named in the strategy).

Each turn is sent to an OpenAI-compatible endpoint (``DatasetConfig.judge_url``, model ``judge_model``) with the
end of the prompt the agent saw and what it wrote; the answer is held to ``GRADE_SCHEMA`` by structured outputs
(``response_format={"type": "json_schema", ...}``, which vLLM and OpenAI enforce), so it parses as
``{"score": 0..10, "reason": ...}``. A turn is kept when ``score / 10 >= judge_min_score``; its score is
``score / 10``. Requests go out ``judge_concurrency`` at a time, through ``OpenAIChatClient``'s retries; an answer
that does not fit the schema, or an endpoint that fails, stops the build with ``JudgeError`` (one line).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from automem.distill.strategies import Verdict
from automem.llm.client import OpenAIChatClient
from automem.llm.protocol import ChatModel, LLMError, OutputConstraint, SamplingParams

if TYPE_CHECKING:
    from automem.distill.config import DatasetConfig
    from automem.distill.turns import MemoryTurn, Source

GRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}
"""The judge's answer."""

_PROMPT_CHARS = 4000  # of the agent's last message: the observation and memory it acted on
_SAMPLING = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=200)
INSTRUCTIONS = (
    "You grade one memory turn of an agent that plays a text game with a directory of memory files. In a LOG "
    "turn the agent records what it learned; in a PLAN turn it reads its memory before acting. A good turn is "
    "specific, true to what the agent saw, not redundant, and useful for later steps. Answer with JSON: an "
    'integer "score" from 0 (useless or harmful) to 10 (exemplary) and a short "reason".'
)


class JudgeError(ValueError):
    """The judge could not grade a turn (endpoint failed, answer outside the schema); one line."""


class JSONSchemaClient(OpenAIChatClient):
    """``OpenAIChatClient`` whose requests ask for an answer in ``GRADE_SCHEMA`` (structured outputs)."""

    @staticmethod
    def request_body(
        messages: list[dict[str, str]],
        model: str,
        sampling: SamplingParams,
        constraint: OutputConstraint | None,
    ) -> dict[str, Any]:
        body = OpenAIChatClient.request_body(messages, model, sampling, constraint)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "memory_turn_grade", "schema": GRADE_SCHEMA, "strict": True},
        }
        return body


def grading_messages(turn: MemoryTurn) -> list[dict[str, str]]:
    """What the judge reads about ``turn``: the instructions, the end of the agent's prompt, its completion."""
    last = next((m["content"] for m in reversed(turn.messages) if m.get("role") == "user"), "")
    shown = last if len(last) <= _PROMPT_CHARS else "..." + last[-_PROMPT_CHARS:]
    user = (
        f"Phase: {turn.phase.upper()}\n\nWhat the agent saw (end of its prompt):\n{shown}\n\n"
        f"What the agent wrote:\n{turn.completion}"
    )
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user}]


def parse_grade(text: str) -> int:
    """The score of an answer in ``GRADE_SCHEMA``.

    Raises:
        JudgeError: the answer is not such an object.
    """
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
        raise JudgeError(f"the judge's answer is not {{'score': 0..10, 'reason': ...}}: {text[:200]!r}")
    return score


async def grade(turns: list[MemoryTurn], model: ChatModel, model_name: str, concurrency: int) -> list[int]:
    """Each turn's score, ``concurrency`` requests at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(turn: MemoryTurn) -> int:
        async with gate:
            try:
                result = await model.chat(grading_messages(turn), model=model_name, sampling=_SAMPLING)
            except LLMError as exc:
                raise JudgeError(f"the judge failed on turn {'/'.join(map(str, turn.key))}: {exc}") from exc
        return parse_grade(result.text)

    return list(await asyncio.gather(*(one(t) for t in turns)))


async def _scores(source: Source, config: DatasetConfig, model: ChatModel, owned: bool) -> list[int]:
    try:
        assert config.judge_model is not None
        return await grade(source.turns, model, config.judge_model, config.judge_concurrency)
    finally:
        if owned and isinstance(model, OpenAIChatClient):
            await model.aclose()  # on the loop that opened its connections


def judge_with(
    source: Source, config: DatasetConfig, model: ChatModel, *, owned: bool = False
) -> list[Verdict]:
    """The ``judge`` verdicts with ``model`` as the judge (``judge`` passes the HTTP client; tests a fake).

    Args:
        owned: close ``model`` (an ``OpenAIChatClient``) when done.
    """
    if config.judge_model is None:
        raise JudgeError("the judge strategy needs judge_model (and judge_url)")
    scores = asyncio.run(_scores(source, config, model, owned))
    return [Verdict(s / 10 >= config.judge_min_score - 1e-12, s / 10) for s in scores]


def judge(source: Source, config: DatasetConfig) -> list[Verdict]:
    """Keep the turns that the model at ``config.judge_url`` scores at or above ``config.judge_min_score``."""
    if config.judge_url is None:
        raise JudgeError("the judge strategy needs judge_url (and judge_model)")
    return judge_with(source, config, JSONSchemaClient(config.judge_url), owned=True)
