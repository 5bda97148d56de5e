r"""Distill, search: Ray Tune trials over training recipes, each scored by the paired turn-level evaluation.

    automem distill search --from runs --run collect --tuning-seeds 900-907 --heldout-seeds 1000-1015 \
        --strategy clean,wellformed --learning-rate 5e-4,1e-3 --name first max_steps=10
    automem distill search --from runs --tuning-seeds 900-907 --endpoint http://127.0.0.1:8100/v1 --model stub

The space is every combination of the comma-separated lists (--strategy, --preset, --epochs, --max-steps,
--learning-rate); KEY=VALUE arguments override training fields in every trial. Each trial builds its dataset from
the store (or reuses it: same content, same id; tuning and held-out seeds are never trained on), trains an adapter
on Ray Train, publishes it to the endpoint as ``<name>-<recipe key>``, asks it and the base model again for the
tuning seeds' memory turns, and appends that evaluation to the store's ledger. The trial with the best adapter-minus-
base difference in --metric (default ``free.wellformed_share``: well-formed operations without the grammar) is
then evaluated once on --heldout-seeds. Prints one line per trial, the best, and the held-out comparison;
``<out>/searches/<name>/result.json`` keeps them. Run the same command again after a stop: Tune resumes the
search from ``<out>/searches/<name>/tune``, finished trials are not trained again.

On the embedded endpoint each trial's adapter becomes a merged copy (an engine of its own, ~1.5 GB of memory; about
two minutes to start on a CPU), so trials run one at a time there. Published adapters stay registered and the
embedded endpoint deploys each at its start: on a 24 GiB machine, three engines beside a two-worker training ran
out of memory (docs/LOG.md); remove the adapters you no longer need with ``automem model remove NAME ...`` (the
running endpoint drops their engines too). Another URL must serve every ``<model>:<name>``
it is asked for (e.g. the stub server, or a vLLM server that loads adapters by name). A failed trial (e.g. one whose training
was killed for memory) is listed and left out; the same command again retries it. Exit status: 0, 1 if no trial
finished, 2 for bad input (an unknown strategy, preset or metric, overlapping seeds, a search of that name declared
differently, a dead endpoint).
"""

from __future__ import annotations

import argparse

from pipelines._common import fail, say

_COMMAND = "distill search"


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``search`` to ``automem distill``'s verbs."""
    s = verbs.add_parser(
        "search",
        help="search training recipes with Ray Tune, scored on tuning seeds, the best checked on held-out seeds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--from", dest="source", required=True, metavar="ROOT", help="trajectory store (or s3://)")
    s.add_argument(
        "--out", metavar="DIR", help="local folder for datasets/ and searches/ (default: --from, if a folder)"
    )
    s.add_argument("--name", default="search", help="the search's name (its folder and adapter prefix)")
    s.add_argument("--run", help="only this run's episodes are trained on (default: every run)")
    s.add_argument("--eval-run", help="only this run's turns are evaluated (default: every run, by seed)")
    s.add_argument("--tuning-seeds", required=True, metavar="SEEDS", help="seeds that score the trials")
    s.add_argument("--heldout-seeds", metavar="SEEDS", help="seeds the best trial is evaluated on, once")
    s.add_argument("--strategy", type=_names, default=["clean"], help="strategies to try (default clean)")
    s.add_argument("--preset", type=_names, default=["cpu-small"], help="presets to try (default cpu-small)")
    s.add_argument("--epochs", type=_floats, help="epochs to try (default: the preset's)")
    s.add_argument("--max-steps", type=_ints, help="optimizer steps to try (default: the preset's)")
    s.add_argument("--learning-rate", type=_floats, help="learning rates to try (default: the preset's)")
    s.add_argument(
        "--metric",
        default="free.wellformed_share",
        help="MODE.METRIC of the adapter-minus-base difference that ranks trials (default free.wellformed_share); "
        "lower is better for n_failed, redundant_writes and repeated_ops",
    )
    s.add_argument("--eval-limit", type=int, default=100, help="turns per evaluation (default 100)")
    s.add_argument("--modes", default="constrained,free", help="evaluation modes (default both)")
    s.add_argument("--parallel", type=int, help="trials at once (default: what the cluster's CPUs hold)")
    s.add_argument(
        "--endpoint",
        default="embedded",
        help="OpenAI-compatible base URL, or embedded (default; started if needed)",
    )
    s.add_argument("--model", help="base model id (default: the embedded endpoint's)")
    s.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, a running local one, or a new one)"
    )
    s.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="training fields for every trial, e.g. max_length=1024",
    )
    s.set_defaults(func=run_search_cmd)


def run_search_cmd(args: argparse.Namespace) -> int:
    from actors.cluster import connect_ray
    from actors.search import run_search
    from automem.config import ConfigError, parse_model
    from automem.distill.search import Endpoint, SearchConfig, SearchError
    from automem.serving.endpoint import EndpointError, resolve_endpoint
    from automem.serving.state import read_state

    out = args.out or (None if "://" in args.source else args.source)
    if out is None:
        return fail(_COMMAND, "--out is needed when --from is not a local folder")
    tree = {
        "name": args.name,
        "source": args.source,
        "out": out,
        "run_id": args.run,
        "eval_run": args.eval_run,
        "tuning_seeds": args.tuning_seeds,
        "heldout_seeds": args.heldout_seeds,
        "space": {
            "strategy": args.strategy,
            "preset": args.preset,
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "learning_rate": args.learning_rate,
        },
        "overrides": list(args.overrides),
        "metric": args.metric,
        "eval_limit": args.eval_limit,
        "eval_modes": [m.strip() for m in args.modes.split(",") if m.strip()],
        "parallel": args.parallel,
    }
    labels = {"space.strategy": "--strategy", "space.preset": "--preset", "tuning_seeds": "--tuning-seeds"}
    try:
        config = parse_model(SearchConfig, tree, source="the command line", what="search", labels=labels)
        config.training_configs()  # every preset with the overrides: an unknown field is named now
        url, _ = resolve_endpoint(args.endpoint, say)
    except (ConfigError, ValueError, EndpointError) as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    embedded = args.endpoint == "embedded"
    if embedded:
        state = read_state()
        base = args.model or (state.model_id if state else "smollm2-135m")
    elif not args.model:
        return fail(_COMMAND, "--model is needed with an --endpoint URL (the base model's id there)")
    else:
        base = args.model
    connect_ray(args.address)
    try:
        result = run_search(config, Endpoint(url=url, base_model=base, publish=embedded), say=say)
    except SearchError as exc:
        return fail(_COMMAND, " ".join(str(exc).split()), code=1 if "no trial finished" in str(exc) else 2)
    print(f"{'trial':<9} {'recipe':<52} {'rows':>5} {'loss':>13} {config.metric:>24}")
    for t in sorted(result["trials"], key=lambda t: t["key"]):
        recipe = " ".join(f"{k}={v}" for k, v in t["recipe"].items())
        loss = f"{_num(t['train_loss_first'])}->{_num(t['train_loss_last'])}"
        print(f"{t['key']:<9} {recipe:<52} {t['dataset_rows']:>5} {loss:>13} {t['score']:>+24.3f}")
    for failed in result["failed"]:
        reason = " ".join(" ".join(failed["error"]).split())
        print(f"failed: {failed['recipe']}: {reason[:240]}{'...' if len(reason) > 240 else ''}")
    best = result["best"]
    print(
        f"best: {best['adapter']} ({config.metric} {best['score']:+.3f} on tuning seeds {config.tuning_seeds})"
    )
    held = result["heldout"]
    if held:
        print(f"held-out seeds {held['seeds']}, {held['turns']} turns, paired:")
        print(f"{'mode':<12} {'metric':<17} {'base':>8} {'adapter':>8} {'diff':>8}  95% interval")
        for c in held["comparisons"]:
            interval = (
                f"[{c['lo']:+.3f}, {c['hi']:+.3f}]" if c["lo"] is not None and c["hi"] is not None else "-"
            )
            print(
                f"{c['mode']:<12} {c['metric']:<17} {c['base']:8.3f} {c['adapter']:8.3f} {c['diff']:+8.3f}  {interval}"
            )
    print(f'search: {config.folder}/result.json; ledger: automem query {args.source} "SELECT * FROM ledger"')
    return 0


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"
