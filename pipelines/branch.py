"""Counterfactual replay of stored episodes (issue 19). ``restore`` puts an episode's game and memory back as they
were at a step, so a person can inspect the state:

    automem branch restore runs crafter-v0-20250101T000000 000000-crafter-v0-s0 --at-step 12 --to /tmp/mem
    automem branch restore s3://bucket/traj nh-0001 000003-nethack-v0-s3 --at-step 0 --to mem0 --attempt 2

Step T is the moment step T began: the game after the recorded actions of steps 0..T-1 (its observation is the one
stored for step T, and every observation on the way is checked against the store byte for byte), and the memory
rebuilt from the op log as it was before step T's LOG turn (the initial files at T = 0). Valid steps are 0 to the
episode's steps - 1.

Writes the memory folder to DIR (a new or empty folder; only once every check passed), prints the observation at
step T, then one summary line. Exit status: 0, or 2 with one line naming the fix for bad input (no store, an
episode that is not committed, a step outside the episode, a store of another schema, a replay that diverges from
the store, a DIR that is not empty), with nothing written.
"""

from __future__ import annotations

import argparse

from pipelines._common import add_retry_argument, emit, error_text, fail, open_root

_COMMAND = "branch restore"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "branch",
        help="restore a stored episode's game and memory at a step",
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
    p.set_defaults(func=lambda _a: fail("branch", "choose a verb: restore"))


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
