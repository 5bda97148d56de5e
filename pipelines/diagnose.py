"""Diagnose: memory-quality diagnostics of a trajectory store, per scaffold and model, or a comparison.

    automem diagnose runs/demo                               # one column per (scaffold, model)
    automem diagnose runs/demo --by env --json               # JSON array of group rows, with 95% intervals
    automem diagnose runs/demo --per-episode --json          # the per-episode counts behind the measures
    automem diagnose runs/base runs/candidate                # B - A per measure, paired by seed when possible
    automem diagnose runs/mixed --compare scaffold --baseline crafter-v0
    ray job submit --working-dir . -- automem diagnose s3://bucket/trajectories --json

Measures (each a ratio of sums over episodes; definitions in automem/diagnostics/): progression (mean, 95%
bootstrap interval), redundant writes, repeated operations, failing operations by kind, empty searches,
unproductive and invalid actions, memory size, memory utility, tokens and model seconds per step and per
progression point.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="memory-quality diagnostics of a trajectory store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="store root: a folder or s3://bucket/prefix")
    p.add_argument("root_b", metavar="ROOT_B", nargs="?", help="a second store: compare B against ROOT")
    p.add_argument(
        "--by",
        default="scaffold,model",
        help="grouping: scaffold, scaffold_content, model (memory model), action_model, env, run, or any "
        "episodes column; comma-separated (default scaffold,model; '' for one group)",
    )
    p.add_argument("--compare", metavar="COLUMN", help="compare the values of COLUMN (e.g. scaffold) in ROOT")
    p.add_argument("--baseline", help="with --compare: the baseline value (default: the first, sorted)")
    p.add_argument(
        "--episodes", help="only these episodes: ids (run/episode or episode, comma-separated) or SQL"
    )
    p.add_argument("--per-episode", action="store_true", help="print the per-episode counts instead")
    p.add_argument("--json", action="store_true", help="print a JSON array of row objects")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from automem.analytics import render
    from automem.diagnostics import compare_groups, compare_tables, diagnose, resolve_by
    from automem.trajectory import StorageError

    try:
        if args.root_b or args.compare:
            if args.root_b:
                a = diagnose(args.root, None, episodes=args.episodes, ci=False).episodes.table
                b = diagnose(args.root_b, None, episodes=args.episodes, ci=False).episodes.table
                table = compare_tables(a, b, label_a=args.root, label_b=args.root_b)
            else:
                per = diagnose(args.root, None, episodes=args.episodes, ci=False).episodes.table
                table = compare_groups(per, resolve_by(args.compare)[0], args.baseline)
            print(render.to_json(table) if args.json else _comparison_text(table))
            return 0
        result = diagnose(args.root, args.by, episodes=args.episodes, ci=not args.per_episode)
    except (duckdb.Error, StorageError, ValueError, KeyError) as exc:
        print(f"automem diagnose: {exc}", file=sys.stderr)
        return 2
    table = result.episodes.table if args.per_episode else result.table
    if args.json:
        print(render.to_json(table))
    elif args.per_episode:
        print(render.to_text(table, max_rows=1000))
    else:
        print(_groups_text(render.to_json_rows(table), result.by))
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _groups_text(rows: list[dict[str, Any]], by: list[str]) -> str:
    """Measures down, groups across: ``value [lo, hi]`` per cell."""
    from automem.diagnostics import MEASURES

    if not rows:
        return "no committed episodes"
    heads = [" / ".join(str(r[b]) for b in by) or "all" for r in rows]
    lines = [["measure", *heads], ["episodes", *(str(r["episodes"]) for r in rows)]]
    lines.append(["steps", *(str(r["steps"]) for r in rows)])
    for m in MEASURES:
        cells = []
        for r in rows:
            v, lo, hi = r.get(m.name), r.get(m.name + "_lo"), r.get(m.name + "_hi")
            cells.append(_fmt(v) if v is None or lo is None else f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]")
        lines.append([m.name, *cells])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("values are ratios of sums over episodes; [95% bootstrap interval]")
    return "\n".join(out)


def _comparison_text(table: Any) -> str:
    rows = table.to_pylist()
    lines = [["A", "B", "measure", "A value", "B value", "B - A [95% CI]", "verdict"]]
    for r in rows:
        ci = f"{_fmt(r['diff'])} [{_fmt(r['diff_lo'])}, {_fmt(r['diff_hi'])}]"
        lines.append([r["a"], r["b"], r["measure"], _fmt(r["value_a"]), _fmt(r["value_b"]), ci, r["verdict"]])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(lines[0]))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    if rows:
        mode = "paired by seed" if rows[0]["paired"] else "unpaired (the sides did not run the same seeds)"
        out.append(f"{mode}; A: {rows[0]['n_a']} episodes, B: {rows[0]['n_b']} episodes")
    return "\n".join(out)
