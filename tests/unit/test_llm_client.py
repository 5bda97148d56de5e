# Run: .venv/bin/python -m pytest tests/unit/test_llm_client.py
"""The OpenAI-compatible client against a real local HTTP server that fails on cue."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from automem.llm import (
    AuthError,
    BadRequestError,
    EndpointUnavailableError,
    LLMError,
    ModelNotFoundError,
    OpenAIChatClient,
    OutputConstraint,
    SamplingParams,
)


class _Server:
    """Answers chat requests with the next scripted status (then 200s), recording bodies and headers."""

    def __init__(self):
        self.script: list[int] = []
        self.raw_200: list[bytes] = []  # bodies to send instead of a chat completion, one per 200
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                status = outer.script.pop(0) if outer.script else 200
                if status == 200 and outer.raw_200:
                    payload = None
                elif status == 200:
                    payload = {
                        "model": body["model"],
                        "choices": [{"message": {"content": "DONE"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 2},
                    }
                else:
                    payload = {"error": {"message": f"scripted {status}"}}
                data = outer.raw_200.pop(0) if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _chat(client, **kw):
    async def go():
        try:
            return await client.chat([{"role": "user", "content": "hi"}], model="m", **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_success_carries_text_usage_and_constraint(server):
    client = OpenAIChatClient(server.url, api_key="k1")
    res = _chat(client, sampling=SamplingParams(max_tokens=5), constraint=OutputConstraint("DONE"))
    assert (res.text, res.prompt_tokens, res.completion_tokens) == ("DONE", 11, 2)
    assert res.latency_s > 0
    body = server.bodies[0]
    assert body["structured_outputs"] == {"regex": "DONE"} and "guided_regex" not in body
    assert body["max_tokens"] == 5
    assert server.auth == ["Bearer k1"]


def test_retries_5xx_and_429_then_succeeds(server):
    server.script = [503, 429, 500]
    client = OpenAIChatClient(server.url, max_retries=3, backoff_s=0.01)
    assert _chat(client).text == "DONE"
    assert client.retries == 3 and len(server.bodies) == 4


def test_gives_up_after_bounded_retries(server):
    server.script = [502] * 10
    client = OpenAIChatClient(server.url, max_retries=2, backoff_s=0.01)
    with pytest.raises(EndpointUnavailableError, match="failed 3 times"):
        _chat(client)
    assert len(server.bodies) == 3


@pytest.mark.parametrize(
    "status, exc", [(401, AuthError), (403, AuthError), (404, ModelNotFoundError), (400, BadRequestError)]
)
def test_non_retryable_errors_fail_at_once(server, status, exc):
    server.script = [status]
    client = OpenAIChatClient(server.url, backoff_s=0.01)
    with pytest.raises(exc):
        _chat(client)
    assert len(server.bodies) == 1


def test_dead_endpoint_is_a_clear_error():
    client = OpenAIChatClient("http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(EndpointUnavailableError, match="automem serve --status"):
        _chat(client)


@pytest.mark.parametrize(
    "body, why",
    [
        (b"<html>gateway says hi</html>", "not JSON"),
        (b"\xff\xfe not even text", "not JSON"),
        (b'["a", "list"]', "not a JSON object"),
        (b'{"object": "chat.completion"}', "no 'choices'"),
        (b'{"choices": []}', "no 'choices'"),
        (b'{"choices": [{"finish_reason": "stop"}]}', "no 'message'"),
        (b'{"choices": [{"message": {"content": 5}}]}', "not a string"),
    ],
)
def test_a_200_that_is_not_a_chat_completion_is_a_protocol_error(server, body, why):
    """Not JSON, or JSON without choices[0].message: an LLMError at once (the server answered; a retry
    would most likely get the same), not a JSONDecodeError or KeyError from deep inside the client."""
    server.raw_200 = [body]
    client = OpenAIChatClient(server.url, max_retries=3, backoff_s=0.01)
    with pytest.raises(LLMError, match=why) as err:
        _chat(client)
    assert type(err.value) is LLMError and "answered 200" in str(err.value)
    assert len(server.bodies) == 1 and client.retries == 0


def test_odd_usage_fields_do_not_fail_a_good_answer(server):
    server.raw_200 = [b'{"choices": [{"message": {"content": null}}], "usage": {"prompt_tokens": "x"}}']
    res = _chat(OpenAIChatClient(server.url))
    assert (res.text, res.prompt_tokens, res.completion_tokens, res.model) == ("", 0, 0, "m")
