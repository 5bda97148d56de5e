"""The report as one self-contained HTML file: the page, its CSS and JS inlined, and the data as JSON.

Nothing is fetched when the page is viewed: a Content-Security-Policy in the page forbids any network load,
and the plots are SVG drawn by the page's own script (``assets/report.js``, no libraries).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any


def _asset(name: str) -> str:
    return resources.files("automem.report").joinpath("assets", name).read_text(encoding="utf-8")


def _embed_json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    # Inside <script>, "</script" would close the element and "<!--" open a comment state. "<" appears in JSON
    # only inside strings, where the escape \u003c means the same character: nothing else needs changing.
    return text.replace("<", "\\u003c")


def embedded_size(value: Any) -> int:
    """Bytes that ``value`` takes in the page's embedded JSON (UTF-8, escaped as ``render_html`` escapes it)."""
    return len(_embed_json(value).encode())


def render_html(payload: dict[str, Any]) -> str:
    """The page for a payload from ``automem.report.data.build_payload``."""
    page = _asset("report.html")
    # Data last, so that text inside it can never be taken for a placeholder.
    for token, value in (
        ("{{TITLE}}", html.escape(str(payload.get("title", "automem report")))),
        ("{{CSS}}", _asset("report.css")),
        ("{{JS}}", _asset("report.js")),
        ("{{DATA}}", _embed_json(payload)),
    ):
        page = page.replace(token, value)
    return page


__all__ = ["embedded_size", "render_html"]
