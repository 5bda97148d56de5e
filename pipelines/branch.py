"""Counterfactual replay of stored episodes: restore one at a step, branch it under other settings, compare, credit.

    automem branch restore runs crafter-v0-20250101T000000 000000-crafter-v0-s0 --at-step 12 --to /tmp/mem
    automem branch play runs crafter-v0-20250101T000000 000000-crafter-v0-s0 --at-step 12 \
        --memory-edit edits.txt --copies 4 --horizon 20 --out branches
    automem branch play runs RUN EP1,EP2 --at-step 5 --scaffold my.yaml --memory-model smollm2-135m:mem-v1 --out b
    automem branch compare branches
    automem branch credit runs RUN 000000-crafter-v0-s0 --turns 3:log:0,7:log:0 --copies 4 --horizon 15 --out cr
    ray job submit --working-dir . -- automem branch play s3://bucket/t RUN EP --at-step 40 ... --out s3://bucket/b

Step T is the moment step T began: the game after the recorded actions of steps 0..T-1 (its observation is the one
stored for step T, and every observation on the way is checked against the store byte for byte), and the memory
rebuilt from the op log as it was before step T's LOG turn (the initial files at T = 0). Valid steps are 0 to the
episode's steps - 1.

restore writes the memory folder to DIR (new or empty; only once every check passed) and prints the observation.
play continues the episodes from step T for --horizon steps under each arm: ``control`` (the episode as recorded:
its scaffold, models and memory) and ``change`` (--scaffold, --model, --memory-model, --memory-edit FILE: memory
operations, one per line, applied to the restored memory), --copies times each with sampling seeds
--sampling-seed + k shared by the arms. It is a rollout: the branches run in parallel on Ray, commit exactly once,
and the same command resumes the run (--run-id). Each episode's parent (run, episode, attempt, step) and what
changed is in the ``branches`` view of ``automem query``. compare prints each arm against the control, paired by
branch point and copy, with 95% intervals (also in ``automem diagnose``). credit branches at S+1 for each memory
turn S:PHASE:K, once with the memory as recorded and once without that turn's operations, and prints the turn's
worth (recorded - removed progression) with its interval; ``automem distill dataset --strategy counterfactual``
selects the turns it credits.

Exit status: 0; 1 if branch episodes failed; 2 with one line naming the fix for bad input (no store, an episode
that is not committed, a step outside the episode, a store of another schema, a replay that diverges from the
store, a memory edit that does not parse, a DIR that is not empty), with nothing written.
"""

from __future__ import annotations

import argparse

from pipelines._common import add_retry_argument, emit, error_text, fail, open_root

_COMMAND = "branch restore"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "branch",
        help="restore, branch and compare stored episodes; credit memory turns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    r = verbs.add_parser(
        "restore",
        help="write an episode's memory folder at step T and print its observation there",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("root", metavar="ROOT", help="store root: a folder or s3://bucket/prefix")
    r.add_argument("run", metavar="RUN", help="run id")
    r.add_argument("episode", metavar="EPISODE", help="episode id")
    r.add_argument("--at-step", dest="step", type=int, required=True, metavar="T", help="the step to restore")
    r.add_argument(
        "--to", dest="out", required=True, metavar="DIR", help="new or empty folder for the memory"
    )
    r.add_argument(
        "--attempt",
        type=int,
        metavar="N",
        help="the committed attempt expected (default: whichever committed)",
    )
    add_retry_argument(r)
    r.set_defaults(func=run_restore)
    _register_play(verbs)
    _register_compare(verbs)
    _register_credit(verbs)
    p.set_defaults(func=lambda _a: fail("branch", "choose a verb: restore, play, compare or credit"))


def run_restore(args: argparse.Namespace) -> int:
    from automem.branch import restore
    from automem.trajectory import read_errors

    try:
        st = open_root(args.root, args.retry_s)
        restored = restore(st, args.run, args.episode, args.step, attempt=args.attempt, memory_dir=args.out)
    except read_errors() as exc:
        return fail(_COMMAND, " ".join(error_text(exc).split()))
    try:
        obs = restored.observation
        files = restored.memory
        size = sum(len(c.encode("utf-8", "surrogateescape")) for c in files.values())
        emit(obs if obs.endswith("\n") else obs + "\n")
        emit(
            f"restored {restored.run_id}/{restored.episode_id} (attempt {restored.attempt}, "
            f"{restored.record['env_id']} seed {restored.record['seed']}) at step {restored.step} of "
            f"{restored.record['steps']}: {len(files)} memory file(s), {size} bytes, in {restored.memory_dir}\n"
        )
    finally:
        restored.close()
    return 0


def _run_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by play and credit: where the branches go and how they run."""
    p.add_argument("--out", required=True, metavar="ROOT", help="store for the branch run (folder or s3://)")
    p.add_argument(
        "--run-id", help="the branch run's id (default: branch-<UTC time>); the same id resumes it"
    )
    p.add_argument("--copies", type=int, default=1, metavar="K", help="plays per point and arm (default 1)")
    p.add_argument("--horizon", type=int, default=20, metavar="H", help="steps played on (default 20)")
    p.add_argument("--sampling-seed", type=int, default=0, help="sampling seed of copy 0 (default 0)")
    p.add_argument("--endpoint", default="embedded", help="the agent's endpoint URL, or embedded (default)")
    p.add_argument("--concurrency", type=int, default=8, help="episodes in flight (default 8)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray", help="ray (default) or local")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _register_play(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "play",
        help="play stored episodes on from step T under changed settings (and as recorded: the control)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="the parent run's store: a folder or s3://bucket/prefix")
    p.add_argument("run", metavar="RUN", help="the parent run's id")
    p.add_argument("episodes", metavar="EPISODE[,EPISODE...]", help="episode ids to branch")
    p.add_argument("--at-step", dest="step", type=int, required=True, metavar="T", help="branch at step T")
    p.add_argument("--scaffold", help="the change arm's scaffold: a name or YAML file")
    p.add_argument("--model", help="the change arm's action model")
    p.add_argument("--memory-model", help="the change arm's memory model, e.g. BASE:ADAPTER")
    p.add_argument("--memory-edit", metavar="FILE", help="memory operations, one per line, applied at step T")
    p.add_argument("--no-control", action="store_true", help="play the change arm only")
    _run_flags(p)
    p.set_defaults(func=run_play)


def _register_compare(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "compare",
        help="each arm of the branch runs against its control, paired by point and copy, with intervals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="the branch runs' store")
    p.add_argument("--run-id", help="one branch run (default: all)")
    add_retry_argument(p)
    p.set_defaults(func=run_compare)


def _register_credit(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "credit",
        help="what memory turns were worth: branch with and without each, K copies, compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="the parent run's store")
    p.add_argument("run", metavar="RUN", help="the parent run's id")
    p.add_argument("episode", metavar="EPISODE", help="the episode whose turns are credited")
    p.add_argument(
        "--turns", required=True, help="memory turns STEP:PHASE:TURN, comma-separated (3:log:0,7:log:0)"
    )
    p.add_argument(
        "--measure",
        default="progression",
        choices=("progression", "op_errors_per_step"),
        help="the credit's measure: progression (default), or op_errors_per_step (fewer failed memory operations "
        "later in the game); the same command again prints a finished run in another measure",
    )
    _run_flags(p)
    p.set_defaults(func=run_credit)


def _play(args: argparse.Namespace, plan, verb: str) -> int:
    """Run a plan as a branch run; print the summary and the comparison."""
    import datetime as dt

    from automem.branch.compare import compare_branches, format_comparisons
    from automem.branch.run import run_branches
    from automem.rollout import RolloutError, RunFailed
    from automem.trajectory.runs import RunBusy
    from pipelines._common import Reporter, print_rollout_summary, say

    run_id = args.run_id or f"branch-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    settings = {"endpoint": args.endpoint, "concurrency": args.concurrency, "executor": args.executor}
    reporter = Reporter(quiet=args.no_progress)
    try:
        with reporter:
            result = run_branches(
                plan,
                out=args.out,
                run_id=run_id,
                horizon=args.horizon,
                settings=settings,
                on_progress=reporter.update,
                say=say,
            )
    except (RolloutError, RunBusy, ValueError) as exc:
        return fail(f"branch {verb}", " ".join(str(exc).split()))
    except RunFailed as exc:
        fail(f"branch {verb}", str(exc), code=1)
        say(f"committed branches are kept; the same command with --run-id {run_id} resumes")
        return 1
    print_rollout_summary(result)
    if result.interrupted:
        say(f"interrupted: the same command with --run-id {run_id} resumes")
        return 130
    if verb == "credit":
        from automem.branch.credit import credits, format_credits

        print(format_credits(credits(args.out, run_id, args.measure)))
    else:
        print(format_comparisons(compare_branches(args.out, run_id)))
    return 0 if not result.failed else 1


def run_play(args: argparse.Namespace) -> int:
    from automem.branch.plan import BranchArm
    from automem.branch.run import simple_plan
    from automem.scaffold.io import ScaffoldError, load

    try:
        change: dict = {}
        if args.scaffold:
            change["scaffold"] = load(args.scaffold)
        if args.model:
            change["model"] = args.model
        if args.memory_model:
            change["memory_model"] = args.memory_model
        if args.memory_edit:
            with open(args.memory_edit, encoding="utf-8") as f:
                change["memory_edit"] = [ln for ln in f.read().splitlines() if ln.strip()]
        arm = BranchArm(name="change", **change) if change else None
        episodes = [e for e in args.episodes.split(",") if e]
        plan = simple_plan(
            args.root,
            args.run,
            episodes,
            args.step,
            arm,
            copies=args.copies,
            control=not args.no_control,
            sampling_seed=args.sampling_seed,
        )
    except (OSError, ScaffoldError, ValueError) as exc:
        return fail("branch play", " ".join(str(exc).split()))
    return _play(args, plan, "play")


def run_credit(args: argparse.Namespace) -> int:
    from automem.branch.credit import credit_plan

    try:
        turns = [t.strip() for t in args.turns.split(",") if t.strip()]
        plan = credit_plan(
            args.root, args.run, args.episode, turns, copies=args.copies, sampling_seed=args.sampling_seed
        )
    except ValueError as exc:
        return fail("branch credit", " ".join(str(exc).split()))
    return _play(args, plan, "credit")


def run_compare(args: argparse.Namespace) -> int:
    from automem.branch.compare import compare_branches, format_comparisons
    from automem.trajectory import read_errors

    try:
        st = open_root(args.root, args.retry_s)
        comps = compare_branches(st, args.run_id)
    except read_errors() as exc:
        return fail("branch compare", " ".join(error_text(exc).split()))
    if not comps:
        return fail(
            "branch compare",
            f"{args.root} has no committed branch episodes"
            + (f" in run {args.run_id}" if args.run_id else ""),
            code=1,
        )
    print(format_comparisons(comps))
    return 0
