"""Distill, eval: the specialist against its base model on recorded memory turns, paired, with 95% intervals.

    automem distill eval --from runs --seeds 1000-1031 --adapter first
    automem distill eval --from runs --run crafter-1 --seeds 1000-1031 --adapter first --limit 200 --json out.json

Each LOG turn of the chosen episodes (use held-out seeds: never the ones trained on) is asked again of the base
model and of ``<base>:<adapter>``, with the turn's grammar (``constrained``) and without it (``free``), greedily;
each answer runs against the episode's memory as it was before that turn. Prints, per mode and metric, both means
and the adapter's difference with a bootstrap 95% interval, and appends a row to the store's ledger
(``automem query ROOT "SELECT * FROM ledger"``). Exit status: 0, or 2 for bad input (no such store or
turns, a dead endpoint, a model it does not serve).
"""

from __future__ import annotations

import argparse

from pipelines._common import fail, say

_COMMAND = "distill eval"


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``eval`` to ``automem distill``'s verbs."""
    e = verbs.add_parser(
        "eval",
        help="compare an adapter with its base model on recorded memory turns (paired, 95%% intervals)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--from", dest="source", required=True, metavar="ROOT", help="trajectory store (or s3://)")
    e.add_argument("--adapter", required=True, help="adapter name: requests go to <base>:<adapter>")
    e.add_argument("--seeds", help="only episodes of these seeds, e.g. 1000-1031 (default: every seed)")
    e.add_argument("--run", help="only this run (default: every run of the store)")
    e.add_argument(
        "--phases", default="log", help="memory phases to ask again: log, plan or log,plan (default log)"
    )
    e.add_argument("--limit", type=int, help="at most N turns, spread over the selection")
    e.add_argument("--modes", default="constrained,free", help="constrained, free or both (default both)")
    e.add_argument(
        "--endpoint",
        default="embedded",
        help="OpenAI-compatible base URL, or embedded (default; started if needed)",
    )
    e.add_argument("--model", help="base model id (default: the embedded endpoint's, smollm2-135m)")
    e.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    e.add_argument("--max-tokens", type=int, default=120, help="completion limit per answer (default 120)")
    e.add_argument("--json", metavar="FILE", help="also write every answer, score and comparison as JSON")
    e.add_argument(
        "--no-ledger", action="store_true", help="do not append the result to the store's ledger (ledger/)"
    )
    e.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from automem.distill.turn_eval import EvalError, evaluate_turns, select_turns
    from automem.llm.client import OpenAIChatClient
    from automem.llm.protocol import LLMError
    from automem.serving.endpoint import EndpointError, resolve_endpoint
    from automem.serving.state import read_state
    from automem.trajectory import read_errors

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if args.limit is not None and args.limit < 1:
        return fail(_COMMAND, "--limit must be at least 1")
    try:
        turns = select_turns(args.source, run_id=args.run, seeds=args.seeds, phases=phases, limit=args.limit)
        url, _ = resolve_endpoint(args.endpoint, say)
    except (EvalError, ValueError, EndpointError, *read_errors()) as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    state = read_state() if args.endpoint == "embedded" else None
    base = args.model or (state.model_id if state else "smollm2-135m")
    adapter = f"{base}:{args.adapter}"
    say(f"{len(turns)} turns x 2 models x {len(modes)} mode(s) against {url}")
    last = [0]

    def progress(done: int, total: int) -> None:
        if done == total or done - last[0] >= max(1, total // 10):
            last[0] = done
            say(f"  {done}/{total} answers")

    try:
        result = evaluate_turns(
            OpenAIChatClient(url),
            turns,
            base=base,
            adapter=adapter,
            modes=modes,
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
            progress=progress,
        )
    except (EvalError, LLMError) as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    print(f"{'mode':<12} {'metric':<17} {'base':>8} {'adapter':>8} {'diff':>8}  95% interval")
    for c in result.comparisons:
        interval = f"[{c.lo:+.3f}, {c.hi:+.3f}]" if c.lo is not None and c.hi is not None else "-"
        print(f"{c.mode:<12} {c.metric:<17} {c.base:8.3f} {c.adapter:8.3f} {c.diff:+8.3f}  {interval}")
    print(f"{len(turns)} turns, paired; adapter {adapter} vs base {base}")
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(result.to_json())
        print(f"answers and scores: {args.json}")
    if not args.no_ledger:
        from dataclasses import asdict

        from automem.distill.ledger import append, ledger_row

        row = ledger_row(
            adapter=adapter,
            base_model=base,
            lineage=_lineage(args.adapter),
            source_run=args.run,
            seeds=args.seeds,
            turns=len(turns),
            modes=list(modes),
            comparisons=[asdict(c) for c in result.comparisons],
            cost=result.cost,
        )
        try:
            path, written = append(args.source, row)
        except OSError as exc:
            return fail(_COMMAND, f"the ledger could not be written: {' '.join(str(exc).split())}")
        print(f"ledger: {path}" + ("" if written else " (this evaluation was already there)"))
    return 0


def _lineage(name: str) -> dict | None:
    """The adapter's training lineage: from the embedded registry's folder, else from the registry of the running
    endpoint (the embedded one's local S3, or a configured ``lora.registry``); None if neither has it."""
    from automem.serving.adapters import AdapterRegistry, describe_local
    from automem.serving.state import read_state
    from pipelines.model_cmd import _running_embedded_registry

    infos = [i for i in describe_local() if i.name == name]
    if not infos:
        state = read_state()
        registry = _running_embedded_registry()
        if registry is None and state is not None and state.adapter_registry:
            registry = AdapterRegistry(state.adapter_registry)
        try:
            infos = [i for i in registry.describe() if i.name == name] if registry is not None else []
        except Exception:  # noqa: BLE001 - lineage is a nice-to-have: an unreachable registry leaves it empty
            infos = []
    lineage = infos[0].lineage if infos else None
    if lineage and not lineage.get("strategy") and lineage.get("dataset"):
        # training.json names the dataset; its manifest names the selection strategy
        from automem.training.data import read_manifest

        try:
            lineage = {**lineage, "strategy": read_manifest(str(lineage["dataset"])).get("strategy")}
        except Exception:  # noqa: BLE001 - the dataset may be gone or elsewhere: the row just lacks it
            pass
    return lineage
