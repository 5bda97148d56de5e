"""Report: one self-contained HTML file with the diagnostics, plots and an episode replay.

    automem report runs/demo --out report.html
    automem report s3://bucket/trajectories --out report.html --by env --max-replay 50
    automem report runs/demo --out best.html \\
        --episodes "SELECT episode_id FROM episodes ORDER BY progression DESC LIMIT 5"
    automem report runs/demo --out two.html --episodes run1/ep-0003,run1/ep-0007
    automem report runs --out adapter.html --compare memory_model --baseline smollm2-135m   # adapter vs base
    ray job submit --working-dir . -- automem report s3://bucket/trajectories --out /tmp/report.html

The page needs no network to view. The whole file stays under --max-mb: the diagnostics cover every selected
episode, while the replay (at most --max-replay episodes), the episode table (at most --max-table-rows) and the
progression plot's dots are seeded random samples when there are more, and the page says so at the top.
Exit status: 0, or 2 for a missing or unreachable store, a bad selection, or a cap too small for the page.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines._common import add_retry_argument, error_text, open_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="an HTML report with episode replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="store root: a folder or s3://bucket/prefix")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--by", default="scaffold,model", help="grouping, as for `automem diagnose --by`")
    p.add_argument(
        "--episodes", help="only these episodes: ids (run/episode or episode, comma-separated) or SQL"
    )
    p.add_argument("--max-replay", type=int, default=20, help="most episodes in the replay (default 20)")
    p.add_argument(
        "--max-table-rows", type=int, default=2000, help="most rows in the episode table (default 2000)"
    )
    p.add_argument(
        "--max-mb", type=float, default=20.0, help="size cap of the whole HTML file in MB (default 20)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument(
        "--compare",
        metavar="COLUMN",
        help="add a comparison page: each value of COLUMN (e.g. memory_model) against --baseline, with intervals",
    )
    p.add_argument("--baseline", help="with --compare: the baseline value (default: the first, sorted)")
    add_retry_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from automem.report import ReportConfig, write_report
    from automem.trajectory import read_errors

    if os.path.isdir(args.out):
        print(f"automem report: error: --out {args.out} is a folder; give a file name", file=sys.stderr)
        return 2
    try:
        cfg = ReportConfig(
            by=args.by,
            episodes=args.episodes,
            max_replay=args.max_replay,
            max_table_rows=args.max_table_rows,
            max_bytes=int(args.max_mb * 1e6),
            seed=args.seed,
            compare=args.compare,
            baseline=args.baseline,
        )
    except ValidationError as exc:
        bad = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        print(f"automem report: error: {bad} (see automem report --help)", file=sys.stderr)
        return 2
    try:
        info = write_report(open_root(args.root, args.retry_s), args.out, cfg)
    except read_errors() as exc:
        print(f"automem report: {error_text(exc)}", file=sys.stderr)
        return 2
    print(
        f"wrote {info['path']} ({info['bytes'] / 1e6:.2f} MB): {info['episodes']} episodes, "
        f"{info['replayed']} in the replay, {info['listed']} in the episode table"
    )
    for note in info["notes"]:
        print(f"note: {note}")
    return 0
