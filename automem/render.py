"""Printing Arrow tables for people (aligned text) and for machines (CSV, JSON rows).

Every DuckDB result type prints in every format. What JSON cannot hold as it is becomes this (``to_json_rows``):

- DECIMAL and HUGEINT: a whole value is a JSON integer; another is a JSON number when a double reads its digits
  back unchanged (``1.10`` as ``1.1``), else a string of its exact digits (``"12345678901234567.89"``).
- DOUBLE and FLOAT NaN and infinities: the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
- DATE, TIME, TIMESTAMP: ISO 8601 strings (``"2024-01-02T03:04:05.123456"``; with the offset, ``+00:00``, when the
  type has a time zone); DuckDB's infinite values as ``"infinity"`` and ``"-infinity"``; years outside 1-9999 in
  ISO 8601's expanded form (``"+290000-01-01T00:00:00"``).
- INTERVAL: an ISO 8601 duration (``"P1Y2M3DT4H5M6.5S"``); each part keeps its own sign, as DuckDB's do
  (``"P1M-3D"``).
- BLOB (and BIT and other binary values): base64 of the bytes (``"qgBhYg=="``).
- UUID: its text. LIST and ARRAY: arrays. STRUCT: objects. MAP: an object whose keys are the keys' text (as
  DuckDB's ``to_json`` writes them).

CSV writes these values too, with LIST, STRUCT and MAP cells as JSON text and DECIMAL cells as their exact digits.
Text shows them as CSV does, with floats rounded to a few significant digits and long cells cut.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa

_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _civil(days: int) -> tuple[int, int, int]:
    """Year, month and day of a day count from 1970-01-01, proleptic Gregorian, any year (H. Hinnant's
    ``civil_from_days``); Python's dates stop at year 9999, DuckDB's do not."""
    z = days + 719468
    era, doe = divmod(z, 146097)
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def _clock(ticks: int, per_second: int) -> str:
    """``HH:MM:SS`` and the fraction (as many digits as the unit has, when not zero) of ``ticks`` into a day."""
    seconds, fraction = divmod(ticks, per_second)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    digits = len(str(per_second)) - 1
    return f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction:0{digits}d}" if fraction else "")


def _temporal_text(t: pa.DataType, raw: int) -> str:
    """A date, time or timestamp from its stored integer, for what Python's types cannot hold."""
    if pa.types.is_time(t):  # DuckDB allows 24:00:00, which Python's time cannot hold
        return _clock(raw, _PER_SECOND[t.unit])
    if abs(raw) == 2 ** (t.bit_width - 1) - 1:  # DuckDB's infinite dates and timestamps
        return "infinity" if raw > 0 else "-infinity"
    if pa.types.is_date(t):
        days, ticks, per_second = (raw if pa.types.is_date32(t) else raw // 86_400_000), 0, 1
    else:
        per_second = _PER_SECOND[t.unit]
        days, ticks = divmod(raw, 86_400 * per_second)
    year, month, day = _civil(days)
    text = (f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}") + f"-{month:02d}-{day:02d}"
    if pa.types.is_timestamp(t):
        text += "T" + _clock(ticks, per_second) + ("+00:00" if t.tz else "")  # stored in UTC
    return text


def _scalar(s: pa.Scalar) -> Any:
    """One cell as a Python value, where the whole column would not convert (an infinite or far date)."""
    if not s.is_valid:
        return None
    t = s.type
    if pa.types.is_time(t) or pa.types.is_date(t) or pa.types.is_timestamp(t):
        try:
            return s.as_py()
        except (OverflowError, ValueError):
            return _temporal_text(t, s.cast(pa.int32() if t.bit_width == 32 else pa.int64()).as_py())
    if pa.types.is_map(t):
        return {_key(_scalar(e["key"])): _scalar(e["value"]) for e in s.values}
    if pa.types.is_struct(t):
        return {t.field(i).name: _scalar(s[i]) for i in range(t.num_fields)}
    if isinstance(s, pa.ListScalar | pa.LargeListScalar | pa.FixedSizeListScalar):
        return [_scalar(v) for v in s.values]
    return s.as_py()


def _column(col: pa.ChunkedArray) -> list[Any]:
    """A column's cells as Python values; dates and times Python cannot hold come as their ISO 8601 text."""
    t = col.type
    if pa.types.is_time(t):  # as text always: pyarrow turns DuckDB's 24:00:00 into 00:00:00
        raw = col.cast(pa.int32() if t.bit_width == 32 else pa.int64()).to_pylist()
        return [None if v is None else _temporal_text(t, v) for v in raw]
    try:
        return col.to_pylist(maps_as_pydicts="strict")
    except (OverflowError, ValueError, TypeError):  # infinite or far dates; a map keyed by structs
        return [_scalar(s) for s in col]


def _decimal(d: Decimal) -> int | float | str:
    if not d.is_finite():
        return str(d)
    if d == d.to_integral_value():
        return int(d)
    f = float(d)
    return f if Decimal(repr(f)) == d else format(d, "f")


def _duration(v: pa.MonthDayNano) -> str:
    """An INTERVAL as an ISO 8601 duration; DuckDB keeps months, days and the rest apart, each with its sign."""
    sign = -1 if v.months < 0 else 1
    years, months = (sign * n for n in divmod(abs(v.months), 12))
    out = "P" + f"{years}Y" * (years != 0) + f"{months}M" * (months != 0) + f"{v.days}D" * (v.days != 0)
    if v.nanoseconds:
        minus = "-" if v.nanoseconds < 0 else ""
        seconds, fraction = divmod(abs(v.nanoseconds), 10**9)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        out += "T" + f"{minus}{hour}H" * (hour != 0) + f"{minus}{minute}M" * (minute != 0)
        if second or fraction:
            out += f"{minus}{second}" + (f".{fraction:09d}".rstrip("0") if fraction else "") + "S"
    return out if out != "P" else "P0D"


def _plain(value: Any) -> Any:
    """A Python cell as a JSON-ready value (the module docstring's rules)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, pa.MonthDayNano):
        return _duration(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)  # a UUID, or a type newer than this code: its text


def _key(key: Any) -> str:
    plain = _plain(key)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)


def _text(value: Any) -> str:
    """A cell as CSV and text show it: DECIMAL exactly, nested values as JSON, others as their JSON value."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    plain = _plain(value)
    return json.dumps(plain, ensure_ascii=False) if isinstance(plain, list | dict) else str(plain)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return str(value)  # a space between date and time reads better in a table
    return _text(value)


def to_text(table: pa.Table, *, max_rows: int = 100, max_width: int = 60, digits: int = 4) -> str:
    """Aligned columns with a header; long cells are cut, and rows past ``max_rows`` are summarised."""
    names = table.column_names
    shown = table.slice(0, max_rows)
    columns = [[_cell(v, digits).replace("\n", "\\n") for v in _column(c)] for c in shown.columns]
    cells = [list(row) for row in zip(*columns, strict=True)] if columns else []
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in table.schema.types
    ]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths]), *(line(row) for row in cells)]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows ({table.num_rows} in all)")
    else:
        out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def to_json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready objects, cells converted as the module docstring says."""
    names = table.column_names
    columns = [[_plain(v) for v in _column(c)] for c in table.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)] if columns else []


def to_json(table: pa.Table) -> str:
    """A JSON array of row objects (strict JSON: no NaN or infinity)."""
    return json.dumps(to_json_rows(table), ensure_ascii=False, allow_nan=False)


def to_csv(table: pa.Table) -> str:
    """CSV with a header; list, struct and map cells as JSON, DECIMAL cells exactly."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in zip(*(_column(c) for c in table.columns), strict=True):
        writer.writerow([_text(v) for v in row])
    return buf.getvalue()


__all__ = ["to_csv", "to_json", "to_json_rows", "to_text"]
