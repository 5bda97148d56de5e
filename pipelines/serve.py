"""Start, inspect or stop the model endpoint (Ray Serve LLM running vLLM).

    automem serve [--config deploy/serve-embedded.yaml] [--set engine.max_model_len=2048 ...]
    automem serve --foreground      # block in this terminal; Ctrl-C stops everything it started
    automem serve --status
    automem serve --stop
    ray job submit --working-dir . -- automem serve --foreground --config deploy/serve-gpu.yaml   # on a cluster

Without ``--foreground`` it starts the serving process in the background (log and state under
``AUTOMEM_STATE_DIR``), shows its progress, waits until a chat request succeeds and prints the base URL
(``http://127.0.0.1:8000/v1``) as its last line. A second ``automem serve`` while one runs just prints the URL.
The serving process connects to ``ray.address``/``RAY_ADDRESS`` or a running local cluster, else starts its own
(``ray.address=local``: always its own), and on stop removes the app, the local S3 server and any cluster it
started. It refuses to deploy over an app it did not start, or on a Serve instance that listens on another port.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

DESCRIPTION = """Start the model endpoint (Ray Serve LLM running vLLM; by default SmolLM2-135M on the CPU with LoRA adapters by
name), wait until it answers a chat request, and print its base URL (http://127.0.0.1:8000/v1) as the last line.
It keeps running in the background; `automem chat "hello"` talks to it, `automem serve --stop` stops it."""

EPILOG = """The config (default: deploy/serve-embedded.yaml of the installed project) is strict: unknown or invalid fields
are named. See deploy/serve-gpu.yaml for a GPU cluster.

Security: with AUTOMEM_API_KEY set, HTTP requests without `Authorization: Bearer <key>` get 401. The key guards
HTTP only: whoever reaches Ray's own ports can call the model directly or run code. A local cluster started here
uses Ray token auth unless RAY_AUTH_MODE is set; on real clusters start Ray with RAY_AUTH_MODE=token.

Files: state and log under AUTOMEM_STATE_DIR (default ~/.cache/automem/state)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``automem serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="start, inspect or stop the model endpoint",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="serve config YAML (default: deploy/serve-embedded.yaml of the installed project)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. server.port=8001 or ray.address=local (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--foreground", action="store_true", help="serve in this process until interrupted")
    mode.add_argument("--status", action="store_true", help="show whether an endpoint runs; exit 0 if ready")
    mode.add_argument("--stop", action="store_true", help="stop the endpoint and everything it started")
    parser.set_defaults(func=run)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _config_path(config: str | None) -> str:
    """``config`` made absolute (the background process may not share our directory), else the default.

    Raises:
        ConfigError: no config given and the project's default is not there.
    """
    from pathlib import Path

    from automem.serving.config import default_config_path

    return str(Path(config).resolve()) if config else str(default_config_path())


def run(args: argparse.Namespace) -> int:
    """Dispatch to status, stop, foreground or background start."""
    from automem.serving.config import ConfigError, load_config

    if args.status:
        return _status()
    if args.stop:
        return _stop()
    try:
        path = _config_path(args.config)
        cfg = load_config(path, args.overrides)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    if args.foreground:
        return _foreground(cfg, path)
    return _background(cfg, args, path)


def _running():
    """The recorded endpoint if its process is alive, else None (stale state is cleared)."""
    from automem.serving.local_s3 import pid_alive
    from automem.serving.state import clear_state, read_state

    state = read_state()
    if state is None:
        return None
    if not pid_alive(state.pid):
        clear_state()
        return None
    return state


def _status() -> int:
    import httpx

    state = _running()
    if state is None:
        print("not running")
        return 1
    try:
        models = [m["id"] for m in _get(httpx, f"{state.base_url}/models").json()["data"]]
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        models = []
    print(f"{state.phase} (pid {state.pid}); {state.message}")
    if state.ray_address:
        own = "its own" if state.started_cluster else "shared"
        print(f"ray: {state.ray_address} ({own} cluster, auth {state.ray_auth or 'unknown'})")
    if state.log:
        print(f"log: {state.log}")
    if models:
        print(f"models: {', '.join(models)}")
    print(state.base_url)
    return 0 if state.phase == "ready" else 1


def _get(httpx, url: str):
    from automem import env_vars

    key = env_vars.AUTOMEM_API_KEY.get()
    resp = httpx.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10)
    resp.raise_for_status()
    return resp


def _stop() -> int:
    from automem.serving.local_s3 import pid_alive, stop_process_group
    from automem.serving.state import clear_state, read_state

    state = read_state()
    if state is None:
        print("not running")
        return 0
    if pid_alive(state.pid):
        print(f"stopping the endpoint (pid {state.pid}) ...", flush=True)
        # SIGINT (a KeyboardInterrupt there) lets it delete the app, stop the S3 server and shut down its own
        # cluster. Not SIGTERM: Ray's failure-signal handler logs SIGTERM and re-raises it, ending the process
        # before Python-level cleanup finishes.
        os.kill(state.pid, signal.SIGINT)
        deadline = time.monotonic() + 90
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if pid_alive(state.pid):
            _err("it did not exit within 90 s; killing its process group")
            stop_process_group(state.pid, 10)
    if state.s3_pid and pid_alive(state.s3_pid):
        stop_process_group(state.s3_pid, 10)  # in its own process group, so not reached above
    clear_state()
    print("stopped")
    return 0


def _background(cfg, args: argparse.Namespace, path: str, print_url: bool = True) -> int:
    import httpx

    from automem.serving.state import state_dir

    state = _running()
    if state is not None:
        if state.phase == "ready":
            _err(f"already running (pid {state.pid})")
            if print_url:
                print(state.base_url)
            return 0
        _err(f"an endpoint is already starting (pid {state.pid}); waiting for it")
    else:
        try:
            httpx.get(cfg.base_url + "/models", timeout=2)
            _err(f"something else already answers on {cfg.base_url}; stop it or pick another server.port")
            return 1
        except httpx.HTTPError:
            pass
        log = state_dir() / "serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pipelines.cli", "serve", "--foreground", "--config", path]
        for item in args.overrides:
            cmd += ["--set", item]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )  # outlives this command and the terminal's Ctrl-C
        _err(f"starting the endpoint in the background (pid {proc.pid}; log: {log})")
        _print_cpu_choice(cfg)
    return _follow(cfg.server.ready_timeout_s + 120, print_url)


def _print_cpu_choice(cfg) -> None:
    """Say which dtype and thread binding the CPU engine gets here, and why (the serving process, started on
    this machine from the same config, makes the same choice and logs it; its progress line may pass unseen)."""
    from automem.serving.options import cpu_choice

    choice = cpu_choice(cfg)
    if choice is not None:
        _err(choice.line())


def ensure_embedded(config: str | None = None) -> tuple[str, str | None]:
    """The running endpoint's base URL, starting the embedded one in the background first if none runs.

    Returns:
        ``(base_url, tokenizer_dir)``: the prepared embedded model's folder when it is the one served, else None.

    Raises:
        RuntimeError: it could not be started (the log is named).
    """
    from automem.llm.embedded import is_prepared, prepared_dir
    from automem.serving.config import EMBEDDED, ConfigError, load_config
    from automem.serving.state import read_state

    try:
        path = _config_path(config)
        cfg = load_config(path)
    except ConfigError as exc:
        raise RuntimeError(str(exc)) from None
    args = argparse.Namespace(overrides=[])
    if _background(cfg, args, path, print_url=False) != 0:
        raise RuntimeError("the embedded endpoint did not start; see `automem serve --status`")
    state = read_state()
    url = state.base_url if state else cfg.base_url
    folder = prepared_dir()
    served_embedded = cfg.model.source == EMBEDDED and (state is None or state.model_id == cfg.model.id)
    return url, str(folder) if served_embedded and is_prepared(folder) else None


def _follow(timeout_s: float, print_url: bool = True) -> int:
    """Echo the serving process's progress until it is ready (print the URL) or fails."""
    from automem.serving.local_s3 import pid_alive
    from automem.serving.state import read_state

    deadline = time.monotonic() + timeout_s
    seen = ""
    started = time.monotonic()
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None:
            if state.message != seen:
                seen = state.message
                _err(f"[{time.monotonic() - started:5.0f} s] {seen}")
            if state.phase == "ready":
                if print_url:
                    print(state.base_url)
                return 0
            if state.phase == "failed" or not pid_alive(state.pid):
                _err(f"the endpoint failed to start: {state.message}\nsee {state.log}")
                return 1
        time.sleep(0.5)
    _err(f"not ready after {timeout_s:.0f} s; `automem serve --status` shows progress, `--stop` gives up")
    return 1


def _foreground(cfg, path: str) -> int:
    from actors.cluster import connect_ray
    from actors.serve_app import start_endpoint, stop_endpoint
    from automem.serving.state import EndpointState, clear_state, read_state, state_dir, write_state

    running = _running()
    if running is not None and running.pid != os.getpid():
        _err(f"an endpoint already runs (pid {running.pid}): {running.base_url}")
        return 1
    state = EndpointState(
        pid=os.getpid(),
        base_url=cfg.base_url,
        model_id=cfg.model.id,
        config=path,
        log=str(state_dir() / "serve.log"),
    )

    def progress(msg: str) -> None:
        print(msg, flush=True)
        state.message = msg
        write_state(state)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    endpoint = None
    started_cluster = False
    try:
        progress("connecting to Ray")
        conn = connect_ray(cfg.ray.address, num_cpus=cfg.ray.num_cpus)
        started_cluster = conn.started
        state.started_cluster = started_cluster
        state.ray_address, state.ray_auth = conn.address, conn.auth_mode
        progress(f"Ray: {conn.how} at {conn.address}")
        endpoint = start_endpoint(cfg, progress=progress, log_dir=state_dir())
        state.adapter_registry = endpoint.registry.uri if endpoint.registry else None
        state.s3_endpoint = endpoint.local_s3.url if endpoint.local_s3 else None
        state.s3_pid = endpoint.local_s3.pid if endpoint.local_s3 else None
        state.phase = "ready"
        progress(f"serving {cfg.model.id} at {cfg.base_url} (ready after {endpoint.ready_s:.0f} s)")
        print(cfg.base_url, flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - recorded for `automem serve` and --status, then re-reported
        state.phase = "failed"
        progress(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up even if asked twice
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if endpoint is not None and endpoint.local_s3 is not None:
            endpoint.local_s3.stop()  # first: quick, and a separate process group nobody else would stop
        stop_endpoint(endpoint)
        if started_cluster:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
        current = read_state()
        if current is not None and current.pid == os.getpid() and state.phase != "failed":
            clear_state()
