"""``automem env list|show|play``: the text environments, from the terminal.

automem env list [--json]
automem env show crafter-v0 --seed 3 --steps 20
automem env play nethack-v0 --seed 7

``show`` prints the observation after N actions drawn from a generator seeded with the env seed, so the same
command prints the same text every time. ``play`` lets a person play: type an action name or its number, ``?``
for the action list, ``q`` to quit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

_IDS_HINT = "see `automem env list`"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _seed(text: str) -> int:
    """An argparse type: a seed under the envs' contract (an int in [0, 2**64), ``check_seed``)."""
    from automem.envs.base import check_seed

    value = _int(text)
    try:
        check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _count(minimum: int):
    """An argparse type: an int of at least ``minimum``."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``env`` command and its sub-commands to the top-level parser."""
    p = sub.add_parser(
        "env",
        help="list, show and play the text environments",
        description="The games the agents play, as text: Crafter, eight MiniHack tasks and NetHack, each under a "
        "versioned id (" + _IDS_HINT + "). The same id, seed and actions always give the same text.",
    )
    esub = p.add_subparsers(dest="env_command", metavar="SUBCOMMAND", required=True)
    lst = esub.add_parser("list", help="the registered environment ids, one per line with a description")
    lst.add_argument("--json", action="store_true", help="print a JSON list of {id, description, kwargs}")
    show = esub.add_parser(
        "show",
        help="print the observation after N seeded random actions",
        description="Reset ID with --seed, take --steps actions chosen by a generator seeded with the same seed, "
        "and print the last observation with its progression and step.",
    )
    show.add_argument("env_id", metavar="ID", help="environment id (" + _IDS_HINT + ")")
    show.add_argument("--seed", type=_seed, required=True, help="episode seed, an integer in [0, 2**64)")
    show.add_argument("--steps", type=_count(0), default=0, help="random actions to take first (default 0)")
    show.add_argument("--actions", action="store_true", help="also print the action list")
    play = esub.add_parser(
        "play",
        help="play an environment in the terminal",
        description="Type an action name (case-insensitive) or its number and press Enter; '?' lists the "
        "actions, 'q' quits.",
    )
    play.add_argument("env_id", metavar="ID", help="environment id (" + _IDS_HINT + ")")
    play.add_argument(
        "--seed", type=_seed, default=None, help="episode seed in [0, 2**64) (random when left out)"
    )
    for q in (show, play):
        q.add_argument("--max-steps", type=_count(1), default=None, help="override the step cap (at least 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the sub-command; returns the exit code."""
    return {"list": _list, "show": _show, "play": _play}[args.env_command](args)


def _list(args: argparse.Namespace) -> int:
    from automem.envs import list_envs

    specs = list_envs()
    if args.json:
        listed = [
            {
                "id": s.id,
                "description": s.description,
                "kwargs": s.kwargs,
                "test": s.is_test,
                "balrog_equivalent": s.balrog_equivalent,
            }
            for s in specs
        ]
        print(json.dumps(listed))
        return 0
    width = max(len(s.id) for s in specs)
    for s in specs:
        mark = " [BALROG-equivalent]" if s.balrog_equivalent else ""
        print(f"{s.id:<{width}}  {s.description}{mark}")
    return 0


def _make(args: argparse.Namespace) -> Any:
    from automem.envs import UnknownEnvError, make_env

    kwargs = {} if args.max_steps is None else {"max_steps": args.max_steps}
    try:
        return make_env(args.env_id, **kwargs)
    except (UnknownEnvError, ValueError) as exc:  # an unknown id, or settings the env refuses
        print(f"automem env: {exc}", file=sys.stderr)
        return None


def _footer(info: dict[str, Any]) -> str:
    return f"[step {info['step']}, progression {info['progression']:.3f}]"


def _action_list(actions: list[Any]) -> str:
    return "\n".join(f"{i:>3} {a.name}: {a.description}" for i, a in enumerate(actions))


def _show(args: argparse.Namespace) -> int:
    env = _make(args)
    if env is None:
        return 2
    try:
        obs, info = env.reset(seed=args.seed)
        rng = random.Random(args.seed)
        ended = ""
        for _ in range(args.steps):
            obs, _reward, terminated, truncated, info = env.step(rng.randrange(len(env.actions)))
            if terminated or truncated:
                ended = " (episode ended: " + ("terminated" if terminated else "truncated") + ")"
                break
        print(obs)
        print(_footer(info) + ended)
        if args.actions:
            print(_action_list(env.actions))
    finally:
        env.close()
    return 0


def _play(args: argparse.Namespace) -> int:
    from automem.envs import InvalidActionError

    env = _make(args)
    if env is None:
        return 2
    try:
        obs, info = env.reset(seed=args.seed)
        print(
            f"{args.env_id}, seed {info.get('seed', args.seed)}. Type an action name or number; ? lists them."
        )
        total = 0.0
        while True:
            print(obs)
            print(_footer(info))
            try:
                line = input("action> ").strip()
            except EOFError:
                line = "q"
            if line == "q":
                return 0
            if line in ("?", ""):
                print(_action_list(env.actions))
                continue
            try:
                obs, reward, terminated, truncated, info = env.step(line)
            except InvalidActionError as exc:
                print(f"! {exc}")
                continue
            total += reward
            if terminated or truncated:
                print(obs)
                how = "terminated" if terminated else "truncated"
                print(
                    f"Episode {how} after {info['step']} steps: progression {info['progression']:.3f}, "
                    f"return {total:.2f}."
                )
                return 0
    finally:
        env.close()
