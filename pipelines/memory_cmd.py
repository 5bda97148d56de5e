"""``automem memory run ROOT TEXT``: run memory operations against a directory and print JSON results.

automem memory run /tmp/mem 'APPEND notes.md saw a tree to the north
SEARCH tree *
DONE'
echo '[{"op": "READ", "args": ["notes.md"]}]' | automem memory run /tmp/mem - --json
"""

from __future__ import annotations

import argparse
import json
import sys

_EPILOG = """\
Operations (one per line, in any case; DONE ends the turn):
{help}

Exit status is 0 even when operations fail (each result says ok or error);
2 for usage errors (bad flags, unreadable scaffold, --json input that is not a JSON array).
Lines are separated by \\n only. Patterns are literal, case-insensitive substrings, not regexes.
With --json, an item whose op is not a registered operation reports op null.
Results echo each argument and unparsed line up to {echo} characters and error messages up to {error}, then
"... [N more characters cut]"; at most {echo_args} arguments, then "... [N more arguments cut]". Only the echo
is shortened: the operations themselves see every character.
Without --scaffold every operation is enabled, under the default quotas:
{quotas}
"""


def register(sub: argparse._SubParsersAction) -> None:
    from automem.memory import DEFAULT_QUOTAS, render_help
    from automem.memory.results import ECHO_ARGS, ECHO_CHARS, ERROR_CHARS

    p = sub.add_parser("memory", help="run memory operations against a directory")
    msub = p.add_subparsers(dest="memory_command", metavar="SUBCOMMAND", required=True)
    run = msub.add_parser(
        "run",
        help="parse TEXT and run its operations against directory ROOT; prints a JSON array of results",
        description="Parse TEXT as a memory turn (or a JSON array with --json), run each operation in order "
        "against directory ROOT (created if missing) and print one JSON object per operation or parse error.",
        epilog=_EPILOG.format(
            help=render_help(),
            echo=ECHO_CHARS,
            echo_args=ECHO_ARGS,
            error=ERROR_CHARS,
            quotas=", ".join(f"{k}={v}" for k, v in DEFAULT_QUOTAS.model_dump().items()),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("root", metavar="ROOT", help="memory directory (created if missing)")
    run.add_argument("text", metavar="TEXT", help="the operations; '-' reads standard input")
    run.add_argument(
        "--json", action="store_true", help='TEXT is a JSON array of {"op": NAME, "args": [strings]}'
    )
    run.add_argument(
        "--scaffold", metavar="FILE|NAME", help="take enabled operations and quotas from a scaffold"
    )
    run.add_argument("--indent", type=int, default=None, help="pretty-print the JSON with this indent")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from automem.memory import ALL_OPS, DEFAULT_QUOTAS, MemoryStore, execute, parse, parse_json
    from automem.scaffold import ScaffoldError, load

    # Bytes that are not UTF-8 become lone surrogates (as in argv), which every operation refuses by name.
    text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape") if args.text == "-" else args.text
    enabled, quotas = ALL_OPS, DEFAULT_QUOTAS
    if args.scaffold:
        try:
            scaffold = load(args.scaffold)
        except ScaffoldError as exc:
            print(f"automem memory run: {exc}", file=sys.stderr)
            return 2
        enabled, quotas = scaffold.operations, scaffold.quotas
    if args.json:
        try:
            parsed = parse_json(text)
        except ValueError as exc:
            print(
                f"automem memory run: --json input is not a JSON array of operations: {exc}", file=sys.stderr
            )
            return 2
    else:
        parsed = parse(text, enabled)
    try:
        store = MemoryStore.open_dir(args.root, quotas)
    except OSError as exc:
        print(f"automem memory run: cannot use {args.root!r} as a memory root: {exc}", file=sys.stderr)
        return 2
    results = execute(store, parsed, enabled=enabled)
    _print_json([r.to_json() for r in results], args.indent)
    return 0


def _print_json(data: list, indent: int | None) -> None:
    """Always valid UTF-8 JSON on stdout, whatever the locale and whatever the results echo."""
    try:
        out = json.dumps(data, indent=indent, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A safety net: results already show undecodable input as \udcff (results.printable) and file reads
        # replace bad bytes, so only a lone surrogate some new path lets through gets here; escape it too.
        out = json.dumps(data, indent=indent).encode()
    sys.stdout.flush()
    sys.stdout.buffer.write(out + b"\n")
    sys.stdout.buffer.flush()
