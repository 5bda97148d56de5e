"""Chat models: the protocol, the OpenAI-compatible client, a scripted fake, token counting."""

from automem.llm.client import OpenAIChatClient
from automem.llm.fake import ScriptedChatModel
from automem.llm.protocol import (
    AuthError,
    BadRequestError,
    ChatModel,
    ChatResult,
    EndpointUnavailableError,
    LLMError,
    ModelNotFoundError,
    OutputConstraint,
    SamplingParams,
)
from automem.llm.tokens import ApproxTokenCounter, HFTokenCounter, TokenCounter, count_messages

__all__ = [
    "ApproxTokenCounter",
    "AuthError",
    "BadRequestError",
    "ChatModel",
    "ChatResult",
    "EndpointUnavailableError",
    "HFTokenCounter",
    "LLMError",
    "ModelNotFoundError",
    "OpenAIChatClient",
    "OutputConstraint",
    "SamplingParams",
    "ScriptedChatModel",
    "TokenCounter",
    "count_messages",
]
