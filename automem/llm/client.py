"""An async client for any OpenAI-compatible chat endpoint (Ray Serve LLM, vLLM, others).

Built on aiohttp: at 1,000 concurrent requests httpx spent about 30 ms of CPU per request in its connection pool
(measured in docs/LOG.md), which alone would have capped a runner at ~30 requests/s.

Retries connection errors, timeouts, 429 and 5xx with exponential backoff and jitter, a bounded number of times;
fails at once, with a clear error, on a bad key (401/403), an unknown model (404) or a rejected request (400/422).
A 200 whose body is not an OpenAI chat completion (not JSON, no ``choices``) is a protocol error, raised at once
as ``LLMError``: the server answered, so retrying the same request would most likely get the same answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp

from automem import env_vars
from automem.llm.protocol import (
    DEFAULT_SAMPLING,
    AuthError,
    BadRequestError,
    ChatResult,
    EndpointUnavailableError,
    LLMError,
    ModelNotFoundError,
    OutputConstraint,
    SamplingParams,
)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIChatClient:
    """``ChatModel`` over HTTP.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token; defaults to ``AUTOMEM_API_KEY``.
        timeout_s: per-request timeout.
        max_retries: retries after the first try, for retryable failures only.
        backoff_s: first backoff; doubles each retry, with jitter, capped at ``max_backoff_s``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_connections: int = 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else env_vars.AUTOMEM_API_KEY.get()
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_connections = max_connections
        self._client: aiohttp.ClientSession | None = None
        self.retries = 0  # total retries made, for progress reporting

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily: a session belongs to the event loop it is first used on.
        if self._client is None or self._client.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections, limit_per_host=self.max_connections
                ),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @staticmethod
    def request_body(
        messages: list[dict[str, str]],
        model: str,
        sampling: SamplingParams,
        constraint: OutputConstraint | None,
    ) -> dict[str, Any]:
        """The JSON body of a chat-completions request."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if constraint is not None:
            # vLLM's current field. The older "guided_regex" is accepted and silently ignored: vLLM removed the
            # guided_* fields (vllm-project/vllm#29326) and drops unknown ones (vllm-project/vllm#53975).
            body["structured_outputs"] = {"regex": constraint.regex}
        return body

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        constraint: OutputConstraint | None = None,
    ) -> ChatResult:
        """One chat completion; see the class docstring for the retry policy."""
        body = self.request_body(messages, model, sampling, constraint)
        url = f"{self.base_url}/chat/completions"
        last: str = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries += 1
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random()))
            start = time.perf_counter()
            try:
                async with self._http().post(url, json=body) as resp:
                    status = resp.status
                    # Decoded leniently: a body that is not UTF-8 is a protocol error below, not a crash here.
                    text = (await resp.read()).decode("utf-8", "replace")
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            latency = time.perf_counter() - start
            if status == 200:
                return self._parse(text, model, latency, self.base_url)
            detail = _detail(text)
            if status in (401, 403):
                raise AuthError(f"{self.base_url} refused the API key ({status}): {detail}")
            if status == 404:
                raise ModelNotFoundError(f"model {model!r} is not served at {self.base_url}: {detail}")
            if status in (400, 422):
                raise BadRequestError(f"{self.base_url} rejected the request ({status}): {detail}")
            if status not in _RETRY_STATUS:
                raise LLMError(f"{self.base_url} answered {status}: {detail}")
            last = f"HTTP {status}: {detail}"
        raise EndpointUnavailableError(
            f"{self.base_url} failed {self.max_retries + 1} times; last error: {last}. "
            "Is the endpoint running? (`automem serve --status`)"
        )

    @staticmethod
    def _parse(text: str, model: str, latency: float, base_url: str = "") -> ChatResult:
        """A chat-completion body as a ``ChatResult``.

        Raises:
            LLMError: the body is not JSON or not a chat completion (no ``choices[0].message``).
        """

        def bad(why: str) -> LLMError:
            return LLMError(f"{base_url} answered 200 but {why}: {text[:200]!r}")

        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise bad("the body is not JSON") from None
        if not isinstance(data, dict):
            raise bad("the body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("the body has no 'choices'")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise bad("choices[0] has no 'message'")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise bad("choices[0].message.content is not a string")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        served = data.get("model")
        return ChatResult(
            text=content or "",
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_s=latency,
            model=served if isinstance(served, str) else model,
            finish_reason=choice.get("finish_reason")
            if isinstance(choice.get("finish_reason"), str)
            else None,
        )

    async def list_models(self) -> list[str]:
        """Model ids the endpoint serves (``/v1/models``)."""
        async with self._http().get(f"{self.base_url}/models") as resp:
            if resp.status in (401, 403):
                raise AuthError(f"{self.base_url} refused the API key ({resp.status})")
            if resp.status != 200:
                raise LLMError(f"{self.base_url}/models answered {resp.status}")
            text = (await resp.read()).decode("utf-8", "replace")
        try:
            data = json.loads(text)
            return [str(m["id"]) for m in data.get("data", [])]
        except (ValueError, RecursionError, AttributeError, KeyError, TypeError):
            raise LLMError(
                f"{self.base_url}/models answered 200 but not a model list: {text[:200]!r}"
            ) from None


def _count(value: Any) -> int:
    """A token count from ``usage``; 0 when the server did not give a usable one (usage is informational)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _detail(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err)[:300]
    return str(err)[:300]
