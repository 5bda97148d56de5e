"""Reviewers: what reads a run's episodes and proposes one scaffold patch. A protocol, registered by name.

``rules``
    No model: the first rule of :mod:`automem.evolve.rules` that fires on the run's evidence and proposes a scaffold
    not tried before. Deterministic, offline.
``openai:MODEL[@URL]``
    Any OpenAI-compatible endpoint: automem's own (the embedded model by default, ``openai`` alone) or a user's
    larger model by URL (key from ``OPENAI_API_KEY``). The model answers through structured outputs
    (``response_format`` with :func:`~automem.evolve.patch.patch_json_schema`, generated from the scaffold's pydantic
    model), so even the 135M model's answer is JSON of the right shape.
``anthropic:MODEL``
    The same through the Anthropic SDK (the optional ``anthropic`` extra, ``ANTHROPIC_API_KEY``).

A reviewer never raises on a model's answer: a timeout, a refused request or garbage comes back as a
:class:`Review` with ``error`` set, which the loop records before going on. What *is* raised, before anything runs, is
:class:`ReviewerError`: an unknown name, an unreachable URL, a missing key or SDK.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from automem.evolve.patch import PatchRejected, apply_patch, parse_patch, patch_json_schema
from automem.evolve.rules import Evidence, proposals
from automem.llm.tokens import ApproxTokenCounter, HFTokenCounter, TokenCounter
from automem.scaffold.io import to_yaml
from automem.scaffold.schema import Scaffold


class ReviewerError(ValueError):
    """A reviewer that cannot be used as given (raised before the loop starts)."""


@dataclass(frozen=True)
class ReviewRequest:
    """What a reviewer sees: the scaffold in force, the digest of its episodes, the evidence, what was tried."""

    scaffold: Scaffold
    digest: str
    evidence: Evidence
    tried: frozenset[str] = frozenset()
    """Content ids of scaffolds already gated or refused (a reviewer should propose something else)."""
    notes: tuple[str, ...] = ()
    """One line per earlier candidate: its change and the gate's verdict (for a model's context)."""


@dataclass
class Review:
    """A reviewer's answer: a patch (a mapping, or raw JSON text to be parsed) or nothing, and why."""

    patch: dict[str, Any] | str | None
    rationale: str = ""
    rule: str | None = None
    error: str | None = None
    """Set when the reviewer failed (timeout, refused request, garbage); the loop records it and goes on."""
    seconds: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)


class Reviewer(Protocol):
    """Proposes one patch to a scaffold from a run's digest and evidence."""

    name: str
    counter: TokenCounter
    """The reviewer's tokenizer, which the digest's budget is counted in."""

    @property
    def digest_budget(self) -> int:
        """Tokens of digest its prompt holds."""
        ...

    def review(self, request: ReviewRequest) -> Review: ...


class RulesReviewer:
    """The first rule that fires and proposes a scaffold not in ``request.tried``."""

    name = "rules"

    def __init__(self, digest_budget: int = 2000) -> None:
        self.counter: TokenCounter = ApproxTokenCounter()
        self.digest_budget = digest_budget

    def review(self, request: ReviewRequest) -> Review:
        for p in proposals(request.evidence, request.scaffold):
            try:
                cand = apply_patch(request.scaffold, p.patch)
            except PatchRejected:
                continue
            if cand.content_id not in request.tried:
                return Review(p.patch, rationale=p.finding, rule=p.rule)
        return Review(None, rationale="no rule fires with a change not tried before")


SYSTEM = """You improve the memory scaffold of a game-playing agent. The agent keeps memory files and uses memory
operations; its scaffold (YAML below) holds its prompts, its memory files with their purposes, the operations, quotas
and budgets. Read what the episodes show, then propose ONE small change that should make the agent progress further.
Answer with a JSON object that sets only the fields to change (nested sections merge field by field; "files" is the
whole list) and a short "rationale". Do not repeat a change listed as tried."""


def reviewer_prompt(request: ReviewRequest) -> list[dict[str, str]]:
    """The messages a model reviewer gets (without the digest cut: the loop sized it to ``digest_budget``)."""
    tried = "\n".join(f"- {n}" for n in request.notes) or "(nothing yet)"
    user = (
        f"## Scaffold now\n{to_yaml(request.scaffold)}\n## What the episodes show\n{request.digest}\n\n"
        f"## Changes tried before\n{tried}\n\nYour change, as JSON:"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def prompt_overhead(counter: TokenCounter, scaffold: Scaffold) -> int:
    """Tokens of a reviewer prompt without its digest (and without earlier notes)."""
    empty = ReviewRequest(scaffold, "", Evidence())
    return sum(counter.count(m["content"]) + 8 for m in reviewer_prompt(empty))


class OpenAIReviewer:
    """A model behind an OpenAI-compatible ``/chat/completions``, answering through structured outputs."""

    def __init__(
        self,
        model: str,
        url: str,
        *,
        api_key: str | None = None,
        counter: TokenCounter | None = None,
        context_window: int = 4096,
        max_tokens: int = 600,
        temperature: float = 0.7,
        timeout_s: float = 300.0,
        digest_budget: int | None = None,
        notes_budget: int = 300,
    ) -> None:
        self.name = f"openai:{model}@{url}"
        self.model, self.url, self.api_key = model, url.rstrip("/"), api_key
        self.counter = counter or ApproxTokenCounter()
        self.context_window, self.max_tokens = context_window, max_tokens
        self.temperature, self.timeout_s = temperature, timeout_s
        self.notes_budget = notes_budget
        self._digest_budget = digest_budget

    @property
    def digest_budget(self) -> int:
        return self._digest_budget or 1500

    def fit(self, scaffold: Scaffold) -> int:
        """The digest budget that keeps the prompt and the answer within the context window."""
        room = (
            self.context_window
            - self.max_tokens
            - self.notes_budget
            - prompt_overhead(self.counter, scaffold)
        )
        return max(0, min(room, self._digest_budget or room))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def review(self, request: ReviewRequest) -> Review:
        body = {
            "model": self.model,
            "messages": reviewer_prompt(request),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "scaffold_patch", "schema": patch_json_schema()},
            },
        }
        start = time.monotonic()
        try:
            resp = httpx.post(
                f"{self.url}/chat/completions", json=body, headers=self._headers(), timeout=self.timeout_s
            )
        except httpx.TimeoutException:
            return Review(
                None, error=f"timeout after {self.timeout_s:.0f} s", seconds=time.monotonic() - start
            )
        except httpx.HTTPError as exc:
            return Review(
                None, error=f"request failed: {type(exc).__name__}: {exc}", seconds=time.monotonic() - start
            )
        seconds = time.monotonic() - start
        if resp.status_code != 200:
            return Review(None, error=f"HTTP {resp.status_code}: {resp.text[:300]}", seconds=seconds)
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Review(None, error=f"not a chat completion: {exc!r}", seconds=seconds)
        review = _answer(text, seconds, usage)
        if review.error and choice.get("finish_reason") == "length":
            review.error = f"the answer was cut at max_tokens ({self.max_tokens}); {review.error}"
        return review


def _answer(text: str, seconds: float, usage: dict[str, int]) -> Review:
    """A model's text as a review: its JSON patch and rationale, or the garbage it was (recorded as the error)."""
    try:
        patch = parse_patch(text)
    except PatchRejected as exc:
        return Review(text, error=f"{exc.kind}: {exc.reason}", seconds=seconds, usage=usage)
    return Review(text, rationale=str(getattr(patch, "rationale", "")), seconds=seconds, usage=usage)


class AnthropicReviewer:
    """A Claude model through the Anthropic SDK; the patch schema is given as the one tool it must call."""

    def __init__(
        self, model: str, *, api_key: str, max_tokens: int = 1500, digest_budget: int = 6000
    ) -> None:
        import anthropic

        self.name = f"anthropic:{model}"
        self.model, self.max_tokens = model, max_tokens
        self.counter: TokenCounter = ApproxTokenCounter()
        self.digest_budget = digest_budget
        self._client = anthropic.Anthropic(api_key=api_key)

    def review(self, request: ReviewRequest) -> Review:
        messages = reviewer_prompt(request)
        start = time.monotonic()
        try:
            msg = self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=messages[0]["content"],
                messages=[{"role": "user", "content": messages[1]["content"]}],
                tools=[
                    {
                        "name": "patch",
                        "description": "the scaffold patch",
                        "input_schema": patch_json_schema(),
                    }
                ],
                tool_choice={"type": "tool", "name": "patch"},
            )
        except Exception as exc:  # the SDK's errors share no base we can import without it
            return Review(None, error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - start)
        blocks = [b for b in msg.content if getattr(b, "type", "") == "tool_use"]
        text = json.dumps(getattr(blocks[0], "input", None)) if blocks else ""
        return _answer(text, time.monotonic() - start, {})


def _openai(arg: str, context_window: int, say: Callable[[str], None]) -> OpenAIReviewer:
    from automem.env_vars import AUTOMEM_API_KEY, OPENAI_API_KEY
    from automem.llm.embedded import BASE_MODEL_ID
    from automem.serving.config import EMBEDDED
    from automem.serving.endpoint import EndpointError, resolve_endpoint

    model, _, url = arg.partition("@")
    model = model or BASE_MODEL_ID
    tokenizer_dir = None
    if url:  # a user's server: checked here with its own key (resolve_endpoint would send automem's)
        base, key = url.rstrip("/"), OPENAI_API_KEY.get()
    else:
        try:
            base, tokenizer_dir = resolve_endpoint(EMBEDDED, say)
        except EndpointError as exc:
            raise ReviewerError(f"reviewer openai:{arg}: {exc}") from None
        key = AUTOMEM_API_KEY.get()
    try:
        listed = httpx.get(
            f"{base}/models", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10
        )
    except httpx.HTTPError as exc:
        raise ReviewerError(
            f"reviewer openai:{arg}: {base} is not reachable ({type(exc).__name__}: {exc})"
        ) from None
    if listed.status_code in (401, 403):
        raise ReviewerError(f"reviewer openai:{arg}: {base} refused the key (set OPENAI_API_KEY)")
    if listed.status_code != 200:
        raise ReviewerError(f"reviewer openai:{arg}: {base}/models answered {listed.status_code}")
    try:
        names = [m.get("id") for m in listed.json().get("data", [])]
    except (ValueError, AttributeError):
        names = []
    if names and model not in names:
        raise ReviewerError(f"reviewer openai:{arg}: {base} serves {', '.join(map(str, names))}, not {model}")
    counter: TokenCounter = (
        HFTokenCounter.from_model_dir(tokenizer_dir) if tokenizer_dir else ApproxTokenCounter()
    )
    return OpenAIReviewer(model, base, api_key=key, counter=counter, context_window=context_window)


def _anthropic(arg: str) -> AnthropicReviewer:
    from automem.env_vars import ANTHROPIC_API_KEY

    if not arg:
        raise ReviewerError("reviewer anthropic:MODEL needs a model name, e.g. anthropic:claude-sonnet-4-5")
    try:
        import anthropic  # noqa: F401
    except ImportError:
        raise ReviewerError(
            "reviewer anthropic: the Anthropic SDK is not installed (pip install 'automem[anthropic]')"
        ) from None
    key = ANTHROPIC_API_KEY.get()
    if not key:
        raise ReviewerError("reviewer anthropic: set ANTHROPIC_API_KEY")
    return AnthropicReviewer(arg, api_key=key)


REVIEWERS = ("rules", "openai", "anthropic")


def make_reviewer(
    spec: str, *, context_window: int = 4096, say: Callable[[str], None] | None = None
) -> Reviewer:
    """A reviewer from its name: ``rules``, ``openai[:MODEL[@URL]]`` or ``anthropic:MODEL``.

    Raises:
        ReviewerError: unknown name, unreachable endpoint, missing key or SDK (one line).
    """
    name, _, arg = spec.partition(":")
    say = say or (lambda _m: None)
    if name == "rules" and not arg:
        return RulesReviewer()
    if name == "openai":
        return _openai(arg, context_window, say)
    if name == "anthropic":
        return _anthropic(arg)
    raise ReviewerError(
        f"unknown reviewer {spec!r}: use rules, openai[:MODEL[@URL]] or anthropic:MODEL (known: {', '.join(REVIEWERS)})"
    )


__all__ = [
    "REVIEWERS",
    "AnthropicReviewer",
    "OpenAIReviewer",
    "Review",
    "ReviewRequest",
    "Reviewer",
    "ReviewerError",
    "RulesReviewer",
    "make_reviewer",
    "reviewer_prompt",
]
