"""Distill (Loop 2): datasets of the agent's own good memory turns (``dataset``), a LoRA memory specialist trained
on one (``train``, see ``automem distill train --help``), and its evaluation against the base model (``eval``).

    automem distill dataset --from runs/demo --strategy wellformed --out data
    automem distill dataset --from runs/demo --run demo-1 --strategy utility+outcome --holdout-seeds 1000-1031 \
        --out s3://bucket/loop2
    ray job submit --working-dir . -- automem distill dataset --from s3://bucket/traj --strategy utility \
        --out s3://bucket/loop2
    automem distill dataset --from runs/demo --strategy wellformed+utility+judge \
        --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct --out data

Prints the funnel (how many turns each stage kept), then the dataset's id and folder
(``<out>/datasets/<id>/``: ``rows.parquet``, then ``manifest.json``, written last). Building the same dataset
again prints the same id and writes nothing. Exit status: 0, or 2 for bad input (not a store, no committed
episodes, an unknown strategy, an empty selection), with nothing written.
"""

from __future__ import annotations

import argparse

from pipelines import distill_eval, distill_search, distill_train
from pipelines._common import fail

_COMMAND = "distill dataset"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="Loop 2: datasets of good memory turns, LoRA training, evaluation against the base",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    d = verbs.add_parser("dataset", help="select, clean and write a dataset of memory turns")
    d.add_argument(
        "--from", dest="source", required=True, metavar="ROOT", help="trajectory store: folder or s3://"
    )
    d.add_argument("--run", help="only this run (default: every run of the store)")
    d.add_argument(
        "--strategy",
        default="wellformed",
        help="wellformed, utility, clean, outcome, counterfactual (turns `automem branch credit` measured; "
        "--credit-store), judge (a model grades each turn; --judge-url, --judge-model), or several joined by + "
        "(a turn must pass each); default wellformed",
    )
    d.add_argument(
        "--credit-store", metavar="ROOT", help="counterfactual: the credit runs' store (default: --from)"
    )
    d.add_argument(
        "--credit-min", type=float, default=0.0, help="counterfactual: keep credits above this (default 0)"
    )
    d.add_argument(
        "--credit-measure",
        default="progression",
        choices=("progression", "op_errors_per_step"),
        help="counterfactual: what credits are in (default progression)",
    )
    d.add_argument(
        "--quantile", type=float, default=0.5, help="outcome: progression quantile per env and seed"
    )
    d.add_argument("--holdout-seeds", metavar="SEEDS", help="seeds never trained on, e.g. 1000-1031")
    d.add_argument(
        "--judge-url", metavar="URL", help="judge: OpenAI-compatible endpoint of the grading model"
    )
    d.add_argument("--judge-model", metavar="NAME", help="judge: the grading model's name")
    d.add_argument(
        "--judge-min-score", type=float, default=0.7, help="judge: keep grades (0-10, /10) at least this"
    )
    d.add_argument("--out", required=True, metavar="ROOT2", help="output root: folder or s3://")
    d.set_defaults(func=run_dataset)
    distill_train.register(verbs)
    distill_eval.register(verbs)
    distill_search.register(verbs)
    p.set_defaults(func=lambda _a: fail("distill", "choose a verb: dataset, train, eval or search"))


def run_dataset(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from automem.distill import DatasetConfig, build_dataset
    from automem.trajectory import read_errors

    try:
        config = DatasetConfig(
            source=args.source,
            run_id=args.run,
            strategy=args.strategy,
            quantile=args.quantile,
            holdout_seeds=args.holdout_seeds,
            judge_url=args.judge_url,
            judge_model=args.judge_model,
            credit_store=args.credit_store,
            credit_min=args.credit_min,
            credit_measure=args.credit_measure,
            judge_min_score=args.judge_min_score,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = first["msg"].removeprefix("Value error, ")
        return fail(_COMMAND, f"{where}: {problem}" if where else problem)
    try:
        result = build_dataset(config, args.out)
    except read_errors() as exc:
        return fail(_COMMAND, " ".join(str(exc).split()))
    funnel = result.manifest["funnel"]
    for stage, count in funnel.items():
        if stage == "by_strategy":
            for name, kept in count.items():
                print(f"  {name} alone: {kept}")
        else:
            print(f"{stage}: {count}")
    state = "already built" if result.existed else "written"
    print(f"dataset {result.dataset_id} ({result.manifest['rows']} rows, {state}): {result.path}")
    return 0
