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
import sys

DESCRIPTION = """Start the model endpoint (Ray Serve LLM running vLLM; by default SmolLM2-135M on the CPU with adapters by
name, <base>:<adapter>, each served as a merged copy), wait until it answers a chat request, and print its base URL
(http://127.0.0.1:8000/v1) as the last line. It keeps running in the background; `automem chat "hello"` talks to it,
`automem model publish DIR NAME` adds an adapter to it, `automem serve --stop` stops it."""

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


def run(args: argparse.Namespace) -> int:
    """Dispatch to status, stop, foreground or background start."""
    from automem.serving.config import ConfigError, load_config
    from automem.serving.endpoint import config_path

    if args.status:
        return _status()
    if args.stop:
        return _stop()
    try:
        path = config_path(args.config)
        cfg = load_config(path, args.overrides)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    if args.foreground:
        return _foreground(cfg, path, args.overrides)
    return _background(cfg, args.overrides, path)


def _status() -> int:
    import httpx

    from automem.serving.endpoint import auth_headers, running

    state = running()
    if state is None:
        print("not running")
        return 1
    try:
        resp = httpx.get(f"{state.base_url}/models", headers=auth_headers(), timeout=10)
        resp.raise_for_status()
        models = [m["id"] for m in resp.json()["data"]]
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


def _stop() -> int:
    from automem.serving.endpoint import stop

    print("stopped" if stop(say=lambda m: print(m, flush=True)) else "not running")
    return 0


def _background(cfg, overrides: list[str], path: str) -> int:
    from automem.serving.endpoint import EndpointError, running, start_background, wait_ready

    state = running()
    if state is not None and state.phase == "ready":
        _err(f"already running (pid {state.pid})")
        print(state.base_url)
        return 0
    try:
        if state is not None:
            _err(f"an endpoint is already starting (pid {state.pid}); waiting for it")
        else:
            start_background(cfg, path, overrides, say=_err)
            _print_cpu_choice(cfg)
        state = wait_ready(cfg.server.ready_timeout_s + 120, say=_err)
    except EndpointError as exc:
        _err(str(exc))
        return 1
    print(state.base_url)
    return 0


def _print_cpu_choice(cfg) -> None:
    """Say which dtype and thread binding the CPU engine gets here, and why (the serving process, started on
    this machine from the same config, makes the same choice and logs it; its progress line may pass unseen)."""
    from automem.serving.options import cpu_choice

    choice = cpu_choice(cfg)
    if choice is not None:
        _err(choice.line())


def _foreground(cfg, path: str, overrides: list[str]) -> int:
    from actors.cluster import connect_ray
    from actors.serve_app import start_endpoint, stop_endpoint
    from automem.serving.endpoint import running as running_endpoint
    from automem.serving.state import EndpointState, clear_state, read_state, state_dir, write_state

    running = running_endpoint()
    if running is not None and running.pid != os.getpid():
        _err(f"an endpoint already runs (pid {running.pid}): {running.base_url}")
        return 1
    state = EndpointState(
        pid=os.getpid(),
        base_url=cfg.base_url,
        model_id=cfg.model.id,
        config=path,
        overrides=list(overrides),
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
