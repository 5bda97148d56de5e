"""The HTML report: diagnostics, plots and an episode replay in one self-contained file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automem.report.data import ReportConfig, build_payload
from automem.report.html import render_html


def write_report(root: Any, out: str | Path, config: ReportConfig | None = None) -> dict:
    """Build the report of the store at ``root`` (a folder, ``s3://...`` or a ``Storage`` from ``open_store``)
    and write it to ``out``, at most ``config.max_bytes`` long.

    Returns:
        A summary: ``path``, ``bytes``, ``episodes`` (all the report covers), ``listed`` (rows in its episode
        table), ``replayed`` and ``notes`` (what was sampled or cut).
    """
    cfg = config or ReportConfig()
    payload = build_payload(root, cfg)
    page = render_html(payload)
    # build_payload sizes the page to the cap from exact item sizes; should that ever be off, trim, never overshoot.
    if len(page.encode()) > cfg.max_bytes:
        payload["notes"].append("Some replay episodes or table rows were dropped to stay under the size cap.")
        while len(page.encode()) > cfg.max_bytes and (payload["replay"] or payload["episodes"]):
            (payload["replay"] or payload["episodes"]).pop()
            page = render_html(payload)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return {
        "path": str(path),
        "bytes": len(page.encode()),
        "episodes": payload["n_episodes"],
        "listed": len(payload["episodes"]),
        "replayed": len(payload["replay"]),
        "notes": payload["notes"],
    }


__all__ = ["ReportConfig", "build_payload", "render_html", "write_report"]
