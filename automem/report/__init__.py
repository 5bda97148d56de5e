"""The HTML report: diagnostics, plots and an episode replay in one self-contained file."""

from __future__ import annotations

from pathlib import Path

from automem.report.data import ReportConfig, build_payload
from automem.report.html import render_html


def write_report(root: str, out: str | Path, config: ReportConfig | None = None) -> dict:
    """Build the report of the store at ``root`` and write it to ``out``.

    Returns:
        A summary: ``path``, ``bytes``, ``episodes``, ``replayed`` and ``notes`` (what was sampled or cut).
    """
    payload = build_payload(root, config or ReportConfig())
    page = render_html(payload)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return {
        "path": str(path),
        "bytes": len(page.encode()),
        "episodes": len(payload["episodes"]),
        "replayed": len(payload["replay"]),
        "notes": payload["notes"],
    }


__all__ = ["ReportConfig", "build_payload", "render_html", "write_report"]
