"""Printing Arrow tables for people (aligned text) and for machines (CSV, JSON rows)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from typing import Any

import pyarrow as pa


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def to_text(table: pa.Table, *, max_rows: int = 100, max_width: int = 60, digits: int = 4) -> str:
    """Aligned columns with a header; long cells are cut, and rows past ``max_rows`` are summarised."""
    names = table.column_names
    rows = table.slice(0, max_rows).to_pylist()
    cells = [[_cell(r[n], digits).replace("\n", "\\n") for n in names] for r in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths]), *(line(row) for row in cells)]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows ({table.num_rows} in all)")
    else:
        out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready objects (timestamps as ISO 8601, NaN as null)."""
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def to_json(table: pa.Table) -> str:
    """A JSON array of row objects."""
    return json.dumps(to_json_rows(table), ensure_ascii=False)


def to_csv(table: pa.Table) -> str:
    """CSV with a header; list and struct cells as JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in to_json_rows(table):
        writer.writerow(
            [
                "" if v is None else json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for v in row.values()
            ]
        )
    return buf.getvalue()


__all__ = ["to_csv", "to_json", "to_json_rows", "to_text"]
