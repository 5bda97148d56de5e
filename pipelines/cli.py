"""The ``automem`` command line.

Each sub-command lives in its own module under ``pipelines/`` and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed arguments, returning an exit code). Modules are imported lazily by
name so ``automem --help`` stays fast and a broken optional stack (say, vLLM) cannot break unrelated commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (command name, module, one-line help). Order is the order shown in --help.
COMMANDS: list[tuple[str, str, str]] = [
    ("memory", "pipelines.memory_cmd", "run memory operations against a directory"),
    ("scaffold", "pipelines.scaffold_cmd", "show, validate and diff scaffolds"),
    ("env", "pipelines.env_cmd", "list, show and play the text environments"),
    ("model", "pipelines.model_cmd", "prepare the embedded model"),
    ("serve", "pipelines.serve", "start, inspect or stop the model endpoint"),
    ("chat", "pipelines.chat", "send one chat message to the running endpoint"),
    ("rollout", "pipelines.rollout", "run many episodes in parallel and store their trajectories"),
    ("submit", "pipelines.submit", "submit an automem command to a Ray cluster as a Ray job"),
    ("demo", "pipelines.demo", "the embedded end-to-end demo behind `make demo`"),
    ("query", "pipelines.query", "run SQL over a trajectory store"),
    ("diagnose", "pipelines.diagnose", "memory-quality diagnostics of a trajectory store"),
    ("report", "pipelines.report", "an HTML report with episode replay"),
    ("distill", "pipelines.distill", "build Loop 2 datasets of good memory turns"),
    ("branch", "pipelines.branch", "restore, branch and compare stored episodes; credit memory turns"),
    ("deploy", "pipelines.deploy", "render KubeRay manifests or a ray-up cluster config"),
    (
        "evolve",
        "pipelines.evolve",
        "Loop 1: revise the scaffold from reviewed episodes, behind a paired gate",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command that imports cleanly."""
    parser = argparse.ArgumentParser(
        prog="automem",
        description="Teach language-model agents to manage their own memory, on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet
                continue
            stub = sub.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            stub.set_defaults(func=_unavailable(name, exc))
            continue
        module.register(sub)
    return parser


def _unavailable(name: str, exc: Exception):
    def run(_args: argparse.Namespace) -> int:
        print(f"automem {name}: unavailable because an import failed: {exc}", file=sys.stderr)
        return 2

    return run


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost sub-command parser ``args`` went through (``automem env show`` -> the ``show`` parser)."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, action.dest, None) if action is not None and action.dest else None
        if action is None or name not in action.choices:
            return parser
        parser = action.choices[name]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``automem`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # report it with the sub-command's usage, not the top level's
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
