"""Report: one self-contained HTML file with the diagnostics, plots and an episode replay.

    automem report runs/demo --out report.html
    automem report s3://bucket/trajectories --out report.html --by env --max-replay 50
    automem report runs/demo --out best.html \\
        --episodes "SELECT episode_id FROM episodes ORDER BY progression DESC LIMIT 5"
    automem report runs/demo --out two.html --episodes run1/ep-0003,run1/ep-0007
    ray job submit --working-dir . -- automem report s3://bucket/trajectories --out /tmp/report.html

The page needs no network to view. Its size is capped (--max-mb): when there are more episodes than
--max-replay, the replay holds a seeded random sample, and the page says so at the top.
"""

from __future__ import annotations

import argparse
import sys


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
        "--max-mb", type=float, default=20.0, help="size cap of the embedded data in MB (default 20)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the replay sample (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from automem.report import ReportConfig, write_report
    from automem.trajectory import StorageError

    cfg = ReportConfig(
        by=args.by,
        episodes=args.episodes,
        max_replay=args.max_replay,
        max_bytes=int(args.max_mb * 1e6),
        seed=args.seed,
    )
    try:
        info = write_report(args.root, args.out, cfg)
    except (duckdb.Error, StorageError, ValueError, KeyError) as exc:
        print(f"automem report: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {info['path']} ({info['bytes'] / 1e6:.2f} MB): {info['episodes']} episodes, "
        f"{info['replayed']} in the replay"
    )
    for note in info["notes"]:
        print(f"note: {note}")
    return 0
