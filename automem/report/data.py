"""Everything the HTML report shows, as one JSON-ready dict: diagnostics, plot series, replay episodes, notes.

Size is capped: at most ``max_replay`` episodes are replayed (a seeded random sample when there are more), and
replay episodes are added only while the whole payload stays under ``max_bytes``. Every cut is written into
``notes``, which the page shows at the top.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from automem.analytics.render import to_json_rows
from automem.analytics.store import connect
from automem.diagnostics.episodes import KEY, analyse_store, size_series
from automem.diagnostics.summary import MEASURES, aggregate, resolve_by
from automem.report.replay import episode_replay

_PLOT_POINTS = 200  # most points per line in the plots (steps are binned beyond that)
_EPISODE_COLUMNS = (
    *KEY,
    "env_id",
    "seed",
    "scaffold_id",
    "memory_model",
    "progression",
    "steps",
    "ops",
    "op_errors",
    "writes",
    "redundant_writes",
    "empty_searches",
    "unproductive_actions",
    "invalid_actions",
    "lines_written",
    "lines_read_back",
    "memory_bytes",
    "tokens",
)


@dataclass(frozen=True)
class ReportConfig:
    """What goes into a report and how big it may get."""

    by: str = "scaffold,model"
    """Grouping of the diagnostics and plots (aliases as for ``automem diagnose --by``)."""
    episodes: str | None = None
    """Only these episodes: ids or a SQL query returning ``episode_id``."""
    max_replay: int = 20
    """Most episodes in the replay; more are sampled at random."""
    max_bytes: int = 20 * 1024 * 1024
    """Size cap of the data embedded in the page; replay episodes that would pass it are left out."""
    seed: int = 0
    """Seed of the replay sample."""


def _label(row: dict[str, Any], by: list[str]) -> str:
    return " / ".join(str(row.get(b)) for b in by) or "all"


def _bin(points: list[tuple[int, float]]) -> list[list[float]]:
    """At most ``_PLOT_POINTS`` points: means over equal-width step bins."""
    if len(points) <= _PLOT_POINTS:
        return [[x, y] for x, y in points]
    width = -(-(points[-1][0] + 1) // _PLOT_POINTS)
    bins: dict[int, list[float]] = {}
    for x, y in points:
        bins.setdefault(x // width, []).append(y)
    return [[b * width, sum(v) / len(v)] for b, v in sorted(bins.items())]


def _group_sql(by: list[str]) -> str:
    return " || ' / ' || ".join(f"coalesce(CAST(e.{b} AS VARCHAR), 'None')" for b in by) if by else "'all'"


def build_payload(root: str, cfg: ReportConfig) -> dict[str, Any]:
    """The report's data for the committed store at ``root`` (see the module docstring for the caps)."""
    by = resolve_by(cfg.by)
    con = connect(root, episodes=cfg.episodes)
    try:
        diag = analyse_store(con)
        per = diag.table
        groups = aggregate(per, by) if per.num_rows else pa.table({})
        rows = per.to_pylist()
        label_of = {tuple(r[k] for k in KEY): _label(r, by) for r in rows}
        plots = {
            "progression": _progression(rows, by),
            "memory": _memory(rows, diag.sizes, label_of),
            "op_mix": _op_mix(con, by),
            "errors": _errors(con, by),
        }
        payload: dict[str, Any] = {
            "title": f"automem report: {root}",
            "root": root,
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "by": by,
            "measures": [{"name": m.name, "doc": m.doc, "better": m.better} for m in MEASURES],
            "groups": [dict(g, label=_label(g, by)) for g in to_json_rows(groups)],
            "episodes": to_json_rows(per.select([c for c in _EPISODE_COLUMNS if c in per.column_names])),
            "plots": plots,
            "replay": [],
            "notes": [],
        }
        _add_replay(con, payload, rows, cfg)
    finally:
        con.close()
    return payload


def _progression(rows: list[dict], by: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(_label(r, by), []).append(r["progression"])
    return out


def _memory(rows: list[dict], sizes: dict, label_of: dict) -> dict[str, list[list[float]]]:
    """Mean memory bytes after each step, over the group's episodes still running at that step."""
    sums: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        key = tuple(r[k] for k in KEY)
        acc = sums.setdefault(label_of[key], {})
        for t, (b, _, _) in enumerate(size_series(sizes.get(key, {}), r["steps"] or 0)):
            cell = acc.setdefault(t, [0.0, 0.0])
            cell[0] += b
            cell[1] += 1
    return {g: _bin([(t, s / n) for t, (s, n) in sorted(acc.items())]) for g, acc in sums.items()}


def _op_mix(con: Any, by: list[str]) -> dict[str, dict[str, int]]:
    sql = f"""SELECT {_group_sql(by)} AS g, coalesce(m.op, '(unparsed)') AS op, count(*) AS n
              FROM memory_ops m JOIN episodes e USING ({", ".join(KEY)})
              WHERE m.phase <> 'init' GROUP BY 1, 2 ORDER BY 1, 3 DESC"""
    out: dict[str, dict[str, int]] = {}
    for g, op, n in con.sql(sql).fetchall():
        out.setdefault(g, {})[op] = n
    return out


def _errors(con: Any, by: list[str]) -> dict[str, list[list[float]]]:
    """Failed operations per operation, by step (binned)."""
    sql = f"""SELECT {_group_sql(by)} AS g, m.step AS t, avg(CASE WHEN m.ok THEN 0 ELSE 1 END) AS rate
              FROM memory_ops m JOIN episodes e USING ({", ".join(KEY)})
              WHERE m.phase <> 'init' GROUP BY 1, 2 ORDER BY 1, 2"""
    series: dict[str, list[tuple[int, float]]] = {}
    for g, t, rate in con.sql(sql).fetchall():
        series.setdefault(g, []).append((t, rate))
    return {g: _bin(points) for g, points in series.items()}


def _add_replay(con: Any, payload: dict[str, Any], rows: list[dict], cfg: ReportConfig) -> None:
    notes = payload["notes"]
    chosen = sorted(rows, key=lambda r: (r["run_id"], r["episode_id"]))
    if len(chosen) > cfg.max_replay:
        chosen = sorted(random.Random(cfg.seed).sample(chosen, cfg.max_replay), key=lambda r: r["episode_id"])
        notes.append(
            f"The replay holds {cfg.max_replay} of {len(rows)} episodes, sampled at random (seed {cfg.seed}); "
            "the diagnostics and plots cover all of them."
        )
    budget = cfg.max_bytes - len(json.dumps(payload, default=str))
    left_out = 0
    for r in chosen:
        key = [r[k] for k in KEY]
        record = episode_replay(
            _fetch(con, "episodes", key)[0],
            _fetch(con, "steps", key),
            _fetch(con, "turns", key),
            _fetch(con, "memory_ops", key),
        )
        size = len(json.dumps(record, default=str))
        if size > budget:
            left_out += 1
            continue
        budget -= size
        payload["replay"].append(record)
    if left_out:
        notes.append(
            f"{left_out} sampled episode(s) were left out of the replay to keep the report under "
            f"{cfg.max_bytes / 1e6:.0f} MB (--max-mb)."
        )


def _fetch(con: Any, table: str, key: list) -> list[dict]:
    where = " AND ".join(f"{k} = ?" for k in KEY)
    return con.sql(f"SELECT * FROM {table} WHERE {where}", params=key).to_arrow_table().to_pylist()


__all__ = ["ReportConfig", "build_payload"]
