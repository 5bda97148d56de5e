"""Diagnose: memory-quality diagnostics of a trajectory store, per scaffold and model, or a comparison.

    automem diagnose runs/demo                               # one column per (scaffold, model)
    automem diagnose runs/demo --by env --json               # JSON array of group rows, with 95% intervals
    automem diagnose runs/demo --per-episode --json          # the per-episode counts behind the measures
    automem diagnose runs/demo --per-episode --json --links  # ... with each read linked to its writes
    automem diagnose runs/base runs/candidate                # B - A per measure, paired by seed
    automem diagnose runs/base runs/candidate --by env       # ... env by env
    automem diagnose runs/mixed --compare scaffold --baseline crafter-v0
    ray job submit --working-dir . -- automem diagnose s3://bucket/trajectories --json

Measures (each a ratio of sums over episodes; definitions in automem/diagnostics/): progression (mean, 95%
bootstrap interval), redundant writes, repeated operations, failing operations by kind, empty searches,
unproductive and invalid actions, memory size (final, and over steps in --json: `memory_by_step`), memory
utility and reads linked to the writes they returned (provenance), tokens and model seconds per step and per
progression point.

Comparisons pair episodes by (env, seed) on the seeds both sides ran and leave out, and count, the episodes
whose seed the other side lacks; with fewer than 3 shared seeds, or shared seeds holding under half of a side's
episodes, they are unpaired. With ROOT_B, --episodes selects in both stores unless --episodes-b is given.
Exit status: 0, or 2 for a usage error, a missing or unreachable store, or a bad selection.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipelines._common import add_retry_argument, emit, error_text, open_root

_DEFAULT_BY = "scaffold,model"


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
        default=None,
        help="grouping: scaffold, scaffold_content, model (memory model), action_model, env, run, or a key or "
        "metadata column of episodes; comma-separated ('' for one group). Default scaffold,model for one "
        "store; with ROOT_B or --compare no grouping unless given (then each group is compared on its own)",
    )
    p.add_argument("--compare", metavar="COLUMN", help="compare the values of COLUMN (e.g. scaffold) in ROOT")
    p.add_argument("--baseline", help="with --compare: the baseline value (default: the first, sorted)")
    p.add_argument(
        "--episodes",
        help="only these episodes: ids (run/episode or episode, comma-separated) or SQL returning episode_id; "
        "with ROOT_B it applies to both stores unless --episodes-b is given",
    )
    p.add_argument("--episodes-b", metavar="EPISODES", help="with ROOT_B: the selection in ROOT_B")
    p.add_argument("--per-episode", action="store_true", help="print the per-episode counts instead")
    p.add_argument(
        "--branches",
        action="store_true",
        help="the branch runs' arms against their control, paired by branch point and copy (automem branch)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array of row objects")
    p.add_argument(
        "--links",
        action="store_true",
        help="with --per-episode --json: add each episode's provenance links (a read, the write of a line it "
        "returned), at most --max-links per episode, and links_total",
    )
    p.add_argument(
        "--max-links", type=int, default=100, metavar="N", help="with --links: most links per episode (100)"
    )
    add_retry_argument(p)
    p.set_defaults(func=run)


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of flags, or None."""
    if args.compare and args.root_b:
        return "--compare compares groups within ROOT; with ROOT_B, use --by to compare group by group"
    if args.baseline and not args.compare:
        return "--baseline needs --compare"
    if args.episodes_b and not args.root_b:
        return "--episodes-b needs ROOT_B"
    if args.per_episode and (args.root_b or args.compare):
        return "--per-episode lists one store's episodes; it does not combine with a comparison"
    if args.branches and (args.root_b or args.compare or args.per_episode or args.episodes):
        return "--branches compares the arms of one store's branch runs; it takes no other selection"
    if args.links and not (args.per_episode and args.json):
        return "--links needs --per-episode --json"
    if args.max_links < 0:
        return "--max-links must be 0 or more"
    if args.retry_s < 0:
        return "--retry-s must be 0 or more"
    return None


def run(args: argparse.Namespace) -> int:
    from automem.trajectory import read_errors

    problem = _usage_error(args)
    if problem:
        print(f"automem diagnose: error: {problem} (see automem diagnose --help)", file=sys.stderr)
        return 2
    try:
        if args.root_b or args.compare:
            table, notes = _comparison(args)
            emit((_to_json(table) if args.json else _comparison_text(table, notes)) + "\n")
            for note in notes if args.json else ():
                print(f"note: {note}", file=sys.stderr)
            return 0
        return _single(args)
    except read_errors() as exc:
        print(f"automem diagnose: {error_text(exc)}", file=sys.stderr)
        return 2


def _open(root: str, args: argparse.Namespace) -> Any:
    return open_root(root, args.retry_s)


def _branches(args: argparse.Namespace) -> int:
    """Each branch run's arms against its reference arm (``automem.branch.compare``)."""
    import dataclasses
    import json

    from automem.branch.compare import compare_branches, format_comparisons

    comps = compare_branches(_open(args.root, args), None)
    if args.json:
        emit(json.dumps([dataclasses.asdict(c) for c in comps]) + "\n")
    else:
        emit((format_comparisons(comps) or "no committed branch episodes in this store") + "\n")
    return 0


def _single(args: argparse.Namespace) -> int:
    from automem import render
    from automem.diagnostics import diagnose

    if args.branches:
        return _branches(args)

    by = _DEFAULT_BY if args.by is None else args.by
    result = diagnose(_open(args.root, args), by, episodes=args.episodes, ci=not args.per_episode)
    if not args.per_episode:
        table = result.table
        emit((_to_json(table) if args.json else _groups_text(render.to_json_rows(table), result.by)) + "\n")
        return 0
    per = result.episodes.table
    if not args.json:
        flat = [n for n, f in zip(per.schema.names, per.schema, strict=True) if not _nested(f.type)]
        emit(render.to_text(per.select(flat), max_rows=1000) + "\n")
        return 0
    rows = render.to_json_rows(per)
    if args.links:
        from automem.diagnostics.episodes import KEY

        for row in rows:
            q = result.episodes.quality[tuple(row[k] for k in KEY)]
            row["links_total"] = row["read_links"]
            row["links"] = q.link_records(args.max_links)
    import json

    emit(json.dumps(rows, ensure_ascii=False) + "\n")
    return 0


def _comparison(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The comparison table and notes (groups compared on one side only)."""
    from automem.diagnostics import compare_by, compare_groups_by, diagnose, resolve_by

    by = resolve_by(args.by)
    if args.root_b:
        a = diagnose(_open(args.root, args), None, episodes=args.episodes, ci=False).episodes.table
        b_sel = args.episodes_b if args.episodes_b is not None else args.episodes
        b = diagnose(_open(args.root_b, args), None, episodes=b_sel, ci=False).episodes.table
        return compare_by(a, b, by, label_a=args.root, label_b=args.root_b)
    per = diagnose(_open(args.root, args), None, episodes=args.episodes, ci=False).episodes.table
    column = resolve_by(args.compare)
    if len(column) != 1:
        raise ValueError(f"--compare takes one column, not {args.compare!r}")
    return compare_groups_by(per, column[0], by, args.baseline)


def _nested(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_struct(t) or pa.types.is_large_list(t)


def _to_json(table: Any) -> str:
    from automem import render

    return render.to_json(table)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _align(lines: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


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
    out = _align(lines)
    out.append(
        "values are ratios of sums over episodes; [95% bootstrap interval]; '-': undefined (0 denominator)"
    )
    out.append("memory size over steps, provenance links: --json, --per-episode --json --links")
    return "\n".join(out)


def _pairing(r: dict[str, Any]) -> str:
    if r["paired"]:
        text = f"paired by seed on {r['pairs']} seeds ({r['n_a']} vs {r['n_b']} episodes)"
        if r["dropped_a"] or r["dropped_b"]:
            text += (
                f"; left out {r['dropped_a']} episode(s) of A and {r['dropped_b']} of B whose seed the other "
                "side did not run"
            )
        return text
    return (
        f"unpaired ({r['n_a']} vs {r['n_b']} episodes; {r['shared_seeds']} shared seeds, too few to pair on: "
        "see automem diagnose --help)"
    )


def _comparison_text(table: Any, notes: list[str]) -> str:
    rows = table.to_pylist()
    by = [c for c in table.column_names[: table.column_names.index("a")]]
    lines = [[*by, "A", "B", "measure", "A value", "B value", "B - A [95% CI]", "verdict"]]
    for r in rows:
        ci = f"{_fmt(r['diff'])} [{_fmt(r['diff_lo'])}, {_fmt(r['diff_hi'])}]"
        lines.append(
            [
                *(str(r[c]) for c in by),
                r["a"],
                r["b"],
                r["measure"],
                _fmt(r["value_a"]),
                _fmt(r["value_b"]),
                ci,
                r["verdict"],
            ]
        )
    out = _align(lines)
    seen: set[tuple] = set()
    for r in rows:
        key = (*(r[c] for c in by), r["a"], r["b"])
        if key not in seen:
            seen.add(key)
            where = " / ".join(str(r[c]) for c in by)
            out.append(f"{(where + ': ') if where else ''}{r['a']} vs {r['b']}: {_pairing(r)}")
    out.extend(f"note: {n}" for n in notes)
    return "\n".join(out)
