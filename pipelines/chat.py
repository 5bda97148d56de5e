"""Send one chat message to the running endpoint and print the answer, to check that it works.

    automem chat "hello"
    automem chat --model smollm2-135m:my-adapter --max-tokens 64 "what do you remember?"
    automem chat --endpoint http://10.0.0.5:8000/v1 "hello"

The endpoint is ``--endpoint``, else ``AUTOMEM_ENDPOINT``, else the one ``automem serve`` started, else
``http://127.0.0.1:8000/v1``. The model is ``--model``, else the running endpoint's base model, else the first one
the endpoint lists. ``AUTOMEM_API_KEY`` is sent when set.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``automem chat``."""
    parser = subparsers.add_parser("chat", help="send one chat message to the running endpoint")
    parser.add_argument("text", help="the user message")
    parser.add_argument("--model", help="model name; an adapter is <base id>:<adapter>")
    parser.add_argument("--endpoint", help="base URL of an OpenAI-compatible endpoint (ends in /v1)")
    parser.add_argument("--max-tokens", type=int, default=128, help="most tokens to generate (default 128)")
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)"
    )
    parser.add_argument("--system", help="an optional system message")
    parser.set_defaults(func=run)


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    from automem import env_vars
    from automem.serving.state import read_state

    state = read_state()
    url = args.endpoint or env_vars.AUTOMEM_ENDPOINT.get() or (state.base_url if state else None)
    model = args.model or (state.model_id if state and (not args.endpoint or url == state.base_url) else None)
    return (url or "http://127.0.0.1:8000/v1").rstrip("/"), model


def run(args: argparse.Namespace) -> int:
    """Print the completion; exit 1 with a reason if the endpoint refuses or is not there."""
    import httpx

    from automem import env_vars

    url, model = _endpoint(args)
    key = env_vars.AUTOMEM_API_KEY.get()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.text}
    ]
    try:
        if model is None:
            listed = httpx.get(f"{url}/models", headers=headers, timeout=30)
            if listed.status_code == 200 and listed.json().get("data"):
                model = listed.json()["data"][0]["id"]
            else:
                model = "smollm2-135m"
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
        }
        resp = httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=300)
    except httpx.HTTPError as exc:
        hint = (
            "is the server running there?"
            if args.endpoint
            else "start one with `automem serve` (`automem serve --status` shows a running one)"
        )
        print(f"automem chat: no endpoint answers at {url} ({type(exc).__name__}); {hint}", file=sys.stderr)
        return 1
    if resp.status_code == 401:
        print(f"automem chat: {url} wants an API key: set AUTOMEM_API_KEY", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(
            f"automem chat: {resp.status_code} from {url} for model {model!r}: {resp.text[:500]}",
            file=sys.stderr,
        )
        return 1
    print(resp.json()["choices"][0]["message"]["content"])
    return 0
