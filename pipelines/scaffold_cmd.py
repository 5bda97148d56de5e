"""``automem scaffold show|validate|diff``: look at, check and compare scaffolds.

automem scaffold show crafter-v0
automem scaffold validate my-scaffold.yaml
automem scaffold diff crafter-v0 my-scaffold.yaml
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scaffold",
        help="show, validate and diff scaffolds",
        description="Scaffolds are YAML data: prompts, memory files, operations, quotas, budgets, sampling. "
        "Built-in ones: crafter-v0, minihack-v0, nethack-v0.",
    )
    ssub = p.add_subparsers(dest="scaffold_command", metavar="SUBCOMMAND", required=True)
    show = ssub.add_parser("show", help="print a scaffold as YAML (with its content id)")
    show.add_argument("scaffold", metavar="NAME|FILE")
    show.set_defaults(func=_show)
    val = ssub.add_parser("validate", help="exit 0 if FILE is a valid scaffold, else 1 naming the bad field")
    val.add_argument("scaffold", metavar="NAME|FILE")
    val.set_defaults(func=_validate)
    dif = ssub.add_parser("diff", help="a unified diff of two scaffolds (exit 0 either way)")
    dif.add_argument("a", metavar="A")
    dif.add_argument("b", metavar="B")
    dif.set_defaults(func=_diff)
    lst = ssub.add_parser("list", help="the built-in scaffolds")
    lst.set_defaults(func=_list)


def _load(name: str):
    from automem.scaffold import ScaffoldError, load

    try:
        return load(name)
    except ScaffoldError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _show(args: argparse.Namespace) -> int:
    from automem.scaffold import content_id, to_yaml

    s = _load(args.scaffold)
    if s is None:
        return 1
    print(f"# content id: {content_id(s)}")
    print(to_yaml(s), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from automem.scaffold import content_id

    s = _load(args.scaffold)
    if s is None:
        return 1
    print(f"ok: {s.id} (content id {content_id(s)})")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from automem.scaffold import diff

    a, b = _load(args.a), _load(args.b)
    if a is None or b is None:
        return 1
    print(diff(a, b) or "(no differences)", end="" if diff(a, b) else "\n")
    return 0


def _list(_args: argparse.Namespace) -> int:
    from automem.scaffold import builtin_names

    print("\n".join(builtin_names()))
    return 0
