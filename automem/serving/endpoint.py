"""The model endpoint as the rest of automem reaches it: resolve a spec to a base URL, and start, wait for or stop
the embedded endpoint that ``automem serve`` runs in the background.

The serving process itself (Ray Serve LLM on a Ray cluster) is ``automem serve --foreground``; this module starts
it as a separate process (it outlives the caller), follows its recorded state (``automem.serving.state``) and
stops it with SIGINT so it can remove its app, its local S3 server and any cluster it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from automem import env_vars
from automem.serving.config import EMBEDDED, ConfigError, ServeConfig, default_config_path, load_config
from automem.serving.local_s3 import pid_alive, stop_process_group
from automem.serving.state import EndpointState, clear_state, read_state, state_dir

Say = Callable[[str], None]


class EndpointError(RuntimeError):
    """The endpoint cannot be reached or started; the message says what to do."""


def _quiet(_msg: str) -> None:
    pass


def auth_headers() -> dict[str, str]:
    """The Authorization header for ``AUTOMEM_API_KEY``, if set."""
    key = env_vars.AUTOMEM_API_KEY.get()
    return {"Authorization": f"Bearer {key}"} if key else {}


def config_path(config: str | None) -> str:
    """``config`` made absolute (the background process may not share our directory), else the default.

    Raises:
        ConfigError: no config given and the project's default is not there.
    """
    return str(Path(config).resolve()) if config else str(default_config_path())


def running() -> EndpointState | None:
    """The recorded endpoint if its process is alive, else None (stale state is cleared)."""
    state = read_state()
    if state is None:
        return None
    if not pid_alive(state.pid):
        clear_state()
        return None
    return state


def start_background(
    cfg: ServeConfig, path: str, overrides: list[str] | tuple[str, ...] = (), say: Say = _quiet
) -> None:
    """Start ``automem serve --foreground`` in the background unless one runs or is starting (then do nothing).

    Raises:
        EndpointError: something else already answers on the config's URL.
    """
    if running() is not None:
        return
    try:
        httpx.get(cfg.base_url + "/models", timeout=2)
    except httpx.HTTPError:
        pass
    else:
        raise EndpointError(
            f"something else already answers on {cfg.base_url}; stop it or pick another server.port"
        )
    log = state_dir() / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pipelines.cli", "serve", "--foreground", "--config", path]
    for item in overrides:
        cmd += ["--set", item]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )  # outlives this process and the terminal's Ctrl-C
    say(f"starting the endpoint in the background (pid {proc.pid}; log: {log})")


def wait_ready(timeout_s: float, say: Say = _quiet) -> EndpointState:
    """Follow the serving process's progress (each new message to ``say``) until it is ready.

    Raises:
        EndpointError: it failed, died, or was not ready within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    seen = ""
    started = time.monotonic()
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None:
            if state.message != seen:
                seen = state.message
                say(f"[{time.monotonic() - started:5.0f} s] {seen}")
            if state.phase == "ready":
                return state
            if state.phase == "failed" or not pid_alive(state.pid):
                raise EndpointError(f"the endpoint failed to start: {state.message}\nsee {state.log}")
        time.sleep(0.5)
    raise EndpointError(
        f"not ready after {timeout_s:.0f} s; `automem serve --status` shows progress, `--stop` gives up"
    )


def stop(say: Say = _quiet) -> bool:
    """Stop the recorded endpoint and everything it started; False if none was recorded."""
    state = read_state()
    if state is None:
        return False
    if pid_alive(state.pid):
        say(f"stopping the endpoint (pid {state.pid}) ...")
        # SIGINT (a KeyboardInterrupt there) lets it delete the app, stop the S3 server and shut down its own
        # cluster. Not SIGTERM: Ray's failure-signal handler logs SIGTERM and re-raises it, ending the process
        # before Python-level cleanup finishes.
        os.kill(state.pid, signal.SIGINT)
        deadline = time.monotonic() + 90
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if pid_alive(state.pid):
            say("it did not exit within 90 s; killing its process group")
            stop_process_group(state.pid, 10)
    if state.s3_pid and pid_alive(state.s3_pid):
        stop_process_group(state.s3_pid, 10)  # in its own process group, so not reached above
    clear_state()
    return True


def wait_for_model(base_url: str, model_id: str, timeout_s: float, say: Say = _quiet) -> float:
    """Poll until a one-token chat completion for ``model_id`` answers 200 (a newly published adapter's merged copy
    takes a merge and an engine start); return the seconds waited.

    Raises:
        EndpointError: not served within ``timeout_s`` (the last answer is in the message).
    """
    body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    t0 = time.monotonic()
    last, said = "no answer", 0.0
    while time.monotonic() - t0 < timeout_s:
        try:
            resp = httpx.post(f"{base_url}/chat/completions", json=body, headers=auth_headers(), timeout=120)
            if resp.status_code == 200:
                return time.monotonic() - t0
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if time.monotonic() - said >= 15:
            said = time.monotonic()
            say(f"  ... waiting for {model_id} ({said - t0:.0f} s)")
        time.sleep(2.0)
    raise EndpointError(
        f"{model_id} was not served within {timeout_s:.0f} s ({last}); see `automem serve --status`"
    )


def ensure_embedded(config: str | None = None, say: Say = _quiet) -> tuple[str, str | None]:
    """The running endpoint's base URL, starting the embedded one in the background first if none runs.

    Returns:
        ``(base_url, tokenizer_dir)``: the prepared embedded model's folder when it is the one served, else None.

    Raises:
        EndpointError: it could not be started (the log is named).
    """
    from automem.llm.embedded import is_prepared, prepared_dir

    try:
        path = config_path(config)
        cfg = load_config(path)
    except ConfigError as exc:
        raise EndpointError(str(exc)) from None
    state = running()
    if state is None or state.phase != "ready":
        start_background(cfg, path, say=say)
        state = wait_ready(cfg.server.ready_timeout_s + 120, say)
    folder = prepared_dir()
    served_embedded = cfg.model.source == EMBEDDED and state.model_id == cfg.model.id
    return state.base_url, str(folder) if served_embedded and is_prepared(folder) else None


def resolve_endpoint(spec: str, say: Say = _quiet) -> tuple[str, str | None]:
    """The base URL to send requests to, and a tokenizer folder for exact budgets when known.

    ``embedded`` means the endpoint ``automem serve`` runs (started now if it is not running); anything else is a
    URL of an OpenAI-compatible server, checked to answer ``/models``.

    Raises:
        EndpointError: the endpoint is not reachable, with what to do about it.
    """
    if spec == EMBEDDED:
        return ensure_embedded(say=say)
    url = spec.rstrip("/")
    try:
        resp = httpx.get(f"{url}/models", headers=auth_headers(), timeout=10)
    except httpx.HTTPError as exc:
        raise EndpointError(f"endpoint {url} is not reachable ({type(exc).__name__}: {exc})") from None
    if resp.status_code in (401, 403):
        raise EndpointError(f"endpoint {url} refused the API key (set AUTOMEM_API_KEY)")
    if resp.status_code != 200:
        raise EndpointError(f"endpoint {url}/models answered {resp.status_code}; is it OpenAI-compatible?")
    return url, None
