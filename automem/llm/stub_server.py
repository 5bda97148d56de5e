"""A stand-in OpenAI-compatible server: scripted completions after a fixed delay, with injectable faults.

For benchmarks and reliability tests of everything around the model (orchestration, storage), and as an offline
stand-in endpoint. Its replies always satisfy the request's ``structured_outputs`` regex when it can build one:
memory turns append a note and end with DONE, action commits pick an allowed action.

    python -m automem.llm.stub_server --port 8100 --latency 2.0 --error-rate 0.05 --hang-rate 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class StubConfig:
    """Behaviour of the stub."""

    latency_s: float = 0.0
    """Delay before each answer."""
    error_rate: float = 0.0
    """Share of requests answered with HTTP 503."""
    hang_rate: float = 0.0
    """Share of requests that hang for ``hang_s`` (a client timeout must cut them)."""
    hang_s: float = 3600.0
    """How long a hanging request hangs."""
    seed: int = 0
    """Seed of the fault and reply choices."""
    models: list[str] = field(default_factory=lambda: ["stub"])
    """Model ids listed by ``/v1/models``; any requested model is served."""
    policy: str = "random"
    """``random``: replies of :func:`reply_for`; ``seeded``: the same, drawn from a generator seeded by the request's
    messages, so that a reply depends on its prompt only, not on the order requests arrive in (an episode plays the
    same on every run and every runner); ``route``: :func:`route_reply`, a toy that depends on the scaffold (for
    Loop 1's tests)."""


def reply_for(regex: str | None, rng: random.Random) -> str:
    """A completion that matches ``regex`` in full (a memory note, or one of the allowed actions)."""
    if not regex:
        return "APPEND notes.md saw something new\nDONE"
    candidates = []
    if regex.startswith("(") and "DONE" not in regex:  # an action commit: (a|b|c)
        options = [re.sub(r"\\(.)", r"\1", o) for o in regex[1:-1].split("|")]
        candidates.append(rng.choice(options))
    if "APPEND" in regex:
        candidates.append(f"APPEND notes.md step note {rng.randrange(10**6)} about what happened\nDONE")
    if "SEARCH" in regex:
        candidates.append(f"SEARCH {rng.randrange(100)} *\nDONE")  # a selective search, like a real one
    candidates.append("DONE")
    for text in candidates:
        if re.fullmatch(regex, text):
            return text
    return candidates[-1]


ROUTE_FILE = "route.md"
KEYED_HINT = "updated with UPSERT"


def route_reply(regex: str | None, messages: list[dict[str, str]], rng: random.Random) -> str:
    """A deliberately scaffold-sensitive toy model, so that Loop 1's tests have patches that help and that hurt.

    PLAN turns read ``route.md``; LOG turns append the same note to ``notes.md`` every step (redundant after the
    first). The action commit walks ``right`` when a READ of ``route.md`` succeeded in this conversation (the memory
    helped) and picks at random otherwise, or when the system prompt asks for keyed files (the toy gets confused).
    JSON requests (a reviewer) get ``{}``. Replies always match ``regex`` when one is given.
    """
    if regex is None:
        return "{}"
    if regex.startswith("(") and "DONE" not in regex:
        options = [re.sub(r"\\(.)", r"\1", o) for o in regex[1:-1].split("|")]
        text = " ".join(m.get("content", "") for m in messages)
        system = messages[0].get("content", "") if messages else ""
        if f"[READ {ROUTE_FILE}]\n" in text and KEYED_HINT not in system and "right" in options:
            return "right"
        return rng.choice(options)
    write = "APPEND" in regex
    for text in (
        "APPEND notes.md the corridor runs east\nDONE" if write else f"READ {ROUTE_FILE}\nDONE",
        "DONE",
    ):
        if re.fullmatch(regex, text):
            return text
    return "DONE"


class StubServer:
    """The aiohttp app and its counters."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.requests = 0
        self.errors = 0
        self.hangs = 0
        self.inflight = 0
        self.max_inflight = 0  # the most requests open at once: what a client's backpressure let through
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_get("/stats", self.stats)

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.config.models]}
        )

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "errors": self.errors,
                "hangs": self.hangs,
                "inflight": self.inflight,
                "max_inflight": self.max_inflight,
            }
        )

    async def chat(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._chat(request)
        finally:
            self.inflight -= 1

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests += 1
        roll = self.rng.random()
        if roll < self.config.error_rate:
            self.errors += 1
            await asyncio.sleep(self.config.latency_s / 10)
            return web.json_response({"error": {"message": "stub: injected failure"}}, status=503)
        if roll < self.config.error_rate + self.config.hang_rate:
            self.hangs += 1
            await asyncio.sleep(self.config.hang_s)
        await asyncio.sleep(self.config.latency_s)
        regex = (body.get("structured_outputs") or {}).get("regex")
        if self.config.policy == "route":
            text = route_reply(regex, body.get("messages", []), self.rng)
        elif self.config.policy == "seeded":
            prompt = json.dumps([self.config.seed, body.get("messages", [])], sort_keys=True)
            text = reply_for(regex, random.Random(prompt))
        else:
            text = reply_for(regex, self.rng)
        prompt_chars = sum(len(m.get("content", "")) for m in body.get("messages", []))
        return web.json_response(
            {
                "id": f"stub-{self.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt_chars // 4,
                    "completion_tokens": max(1, len(text) // 4),
                    "total_tokens": prompt_chars // 4 + max(1, len(text) // 4),
                },
            }
        )


def spawn(
    latency: float = 0.0,
    error_rate: float = 0.0,
    hang_rate: float = 0.0,
    hang_s: float = 3600.0,
    policy: str = "random",
) -> tuple[subprocess.Popen, str]:
    """Start a stub server in its own process on a free loopback port; ``(process, base URL)``. Stop it with
    ``process.kill()``.

    Raises:
        RuntimeError: it did not listen within 30 s.
    """
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        args = [
            "--port",
            "0",
            "--port-file",
            port_file,
            "--latency",
            str(latency),
            "--error-rate",
            str(error_rate),
        ]
        args += ["--hang-rate", str(hang_rate), "--hang-s", str(hang_s), "--policy", policy]
        proc = subprocess.Popen(
            [sys.executable, "-m", "automem.llm.stub_server", *args], stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(port_file) and open(port_file).read().strip():
                return proc, f"http://127.0.0.1:{open(port_file).read().strip()}/v1"
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stub model server did not start")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--hang-rate", type=float, default=0.0)
    p.add_argument("--hang-s", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--policy",
        choices=("random", "seeded", "route"),
        default="random",
        help="reply policy (seeded: a function of the prompt; route: Loop 1's toy)",
    )
    p.add_argument("--port-file", default=None, help="write the bound port here once listening")
    a = p.parse_args(argv)
    server = StubServer(StubConfig(a.latency, a.error_rate, a.hang_rate, a.hang_s, a.seed, policy=a.policy))

    async def serve() -> None:
        runner = web.AppRunner(server.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, a.host, a.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        if a.port_file:
            with open(a.port_file, "w") as f:
                f.write(str(port))
        print(json.dumps({"listening": f"http://{a.host}:{port}/v1"}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
