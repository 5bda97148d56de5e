"""The chat-model seam: what the agent needs from any model server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class OutputConstraint:
    """A constraint on the completion that the server enforces (vLLM structured outputs)."""

    regex: str
    """The completion must match this regex in full."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 128
    seed: int | None = None
    stop: tuple[str, ...] = ()


DEFAULT_SAMPLING = SamplingParams()


@dataclass
class ChatResult:
    """A completion with its cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    finish_reason: str | None = None
    extra: dict = field(default_factory=dict)


class LLMError(RuntimeError):
    """Base class for model-server failures the caller may want to tell apart."""


class AuthError(LLMError):
    """The server refused the API key (401/403). Not retried."""


class ModelNotFoundError(LLMError):
    """The server does not serve the requested model (404). Not retried."""


class BadRequestError(LLMError):
    """The server rejected the request (400/422), e.g. a grammar it cannot compile. Not retried."""


class EndpointUnavailableError(LLMError):
    """The server could not be reached or kept failing (connection errors, timeouts, 429/5xx) after retries."""


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers chat messages: the OpenAI-compatible client, or a scripted fake in tests.

    Models are addressed by name: the base model's id, or ``<base id>:<adapter>`` for a LoRA adapter.
    """

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        constraint: OutputConstraint | None = None,
    ) -> ChatResult: ...
