"""Everything the HTML report shows, as one JSON-ready dict: diagnostics, plot series, replay episodes, notes.

The size cap (``ReportConfig.max_bytes``) holds for the whole HTML file, page and scripts included:

- the diagnostics table and the plots are bounded by construction: the progression plot shows at most
  ``_STRIP_POINTS`` episodes per group (a seeded random sample; the mean and its interval use every episode),
  the line plots at most ``_PLOT_POINTS`` points per group (steps binned);
- the per-episode table lists at most ``max_table_rows`` episodes, a seeded random sample when there are more;
- at most ``max_replay`` episodes are replayed (a seeded random sample when there are more);
- what is left under the cap is shared: the table is guaranteed ``_TABLE_SHARE`` of it (if it needs that much),
  the replay takes episodes in sample order while they fit, and the table then takes what the replay left.
  If even the page without any episode row or replay exceeds the cap, building fails with the size it needs.

Every sample and cut is written into ``notes``, which the page shows at the top.

``lineage`` is Loop 1's tree of candidate scaffolds (``automem.evolve.lineage``), one entry per evolve run: each
node's diff is cut at ``_DIFF_BYTES``, its rationale and reason at ``_TEXT_CHARS``, and the diffs together take at
most ``_LINEAGE_SHARE`` of the cap (the diffs of the scaffolds that were accepted first, then by iteration; those
left out are said so in the notes and on the node). It is part of the page that the episode rows and the replay
share what is left of.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from automem.diagnostics.compare import compare_groups
from automem.diagnostics.episodes import KEY, EpisodeDiagnostics, analyse_store, size_series
from automem.diagnostics.summary import MEASURES, aggregate, resolve_by
from automem.render import to_json_rows
from automem.report.branches import branch_view
from automem.report.html import embedded_size, render_html
from automem.report.replay import episode_replay
from automem.trajectory import READ_RETRY_S, Storage, connect, open_store

_PLOT_POINTS = 200  # most points per line in the plots (steps are binned beyond that)
_STRIP_POINTS = 300  # most episodes drawn per group in the progression plot
_TABLE_SHARE = 0.25  # share of the room under the cap that the episode table may always use
_NOTE_RESERVE = 2048  # bytes kept for the notes, which are written last
_FETCH_CHUNK = 16  # replay episodes read per query (one scan of each table per chunk, not per episode)
_MIN_REPLAY_BYTES = 1024  # below this, no replay record can fit
_DIFF_BYTES = 8192  # most bytes of one lineage node's diff (cut at a line, with a marker)
_TEXT_CHARS = 600  # most characters of a lineage node's rationale or reason
_LINEAGE_SHARE = 0.1  # share of the cap that the lineage diffs may take together
_NO_SCAFFOLD = (
    "invalid_patch",
    "reviewer_error",
    "no_proposal",
)  # decisions that leave no candidate scaffold
_LINEAGE_TEXT = ("reason", "reject_kind", "scaffold_id", "content_id", "reviewer", "rule", "rationale")
_LINEAGE_FIGURES = (
    "digest_tokens",
    "n_seeds",
    "parent_mean",
    "candidate_mean",
    "mean_diff",
    "lower",
    "upper",
    "p_value",
    "margin",
    "level",
    "op_error_rate_diff",
    "op_error_rate_lo",
    "op_error_rate_hi",
    "redundant_write_rate_diff",
    "redundant_write_rate_lo",
    "redundant_write_rate_hi",
)
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
    "linked_reads",
    "memory_bytes",
    "tokens",
)


class ReportConfig(BaseModel):
    """What goes into a report and how big it may get."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    by: str = "scaffold,model"
    """Grouping of the diagnostics and plots (aliases as for ``automem diagnose --by``)."""
    episodes: str | None = None
    """Only these episodes: ids or a SQL query returning ``episode_id``."""
    max_replay: int = Field(20, ge=0)
    """Most episodes in the replay; more are sampled at random."""
    max_table_rows: int = Field(2000, ge=0)
    """Most rows in the per-episode table; more are sampled at random."""
    max_bytes: int = Field(20_000_000, gt=0)
    """Size cap of the whole HTML file, in bytes; the table and the replay are sampled to stay under it."""
    seed: int = 0
    """Seed of the samples (replay, table, progression plot)."""
    retry_for_s: float = Field(READ_RETRY_S, ge=0)
    """How long to retry a store that cannot be reached."""
    compare: str | None = None
    """A column (e.g. ``memory_model``, ``scaffold``) whose values are compared with a baseline value on the
    comparison page: each measure's difference with its 95% interval (paired by seed where possible), as
    ``automem diagnose --compare`` prints it. None: no comparison page."""
    baseline: str | None = None
    """With ``compare``: the baseline value (default: the first, sorted)."""


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _label(row: dict[str, Any], by: list[str]) -> str:
    return " / ".join(str(row.get(b)) for b in by) or "all"


def _bin(points: list[tuple[int, float]], digits: int) -> list[list[float]]:
    """At most ``_PLOT_POINTS`` points: means over equal-width step bins, rounded to ``digits`` decimals."""
    if len(points) > _PLOT_POINTS:
        width = -(-(points[-1][0] + 1) // _PLOT_POINTS)
        bins: dict[int, list[float]] = {}
        for x, y in points:
            bins.setdefault(x // width, []).append(y)
        points = [(b * width, sum(v) / len(v)) for b, v in sorted(bins.items())]
    return [[x, round(y, digits)] for x, y in points]


def _group_sql(by: list[str]) -> str:
    return " || ' / ' || ".join(f"coalesce(CAST(e.{b} AS VARCHAR), 'None')" for b in by) if by else "'all'"


def build_payload(root: Any, cfg: ReportConfig) -> dict[str, Any]:
    """The report's data for the committed store at ``root``, sized so that its page fits ``cfg.max_bytes``.

    ``root`` is a folder or URI, checked by ``open_store``, or a ``Storage`` used as it is (one ``open_store``
    returned).

    Raises:
        StoreError: no store at a ``root`` given as a folder or URI.
        ValueError: a bad selection or grouping, or a cap too small for the page without episodes.
    """
    by = resolve_by(cfg.by)
    st = root if isinstance(root, Storage) else open_store(root, retry_for_s=cfg.retry_for_s)
    con = connect(st, episodes=cfg.episodes)
    try:
        diag = analyse_store(con)
        per = diag.table
        groups = aggregate(per, by, sizes=diag.sizes) if per.num_rows else pa.table({})
        rows = per.to_pylist()
        label_of = {tuple(r[k] for k in KEY): _label(r, by) for r in rows}
        notes: list[str] = []
        plots = {
            "progression": _progression(rows, by, cfg.seed, notes),
            "memory": _memory(rows, diag.sizes, label_of),
            "op_mix": _op_mix(con, by),
            "errors": _errors(con, by),
        }
        name = root if isinstance(root, str) else getattr(root, "uri", str(root))
        payload: dict[str, Any] = {
            "title": f"automem report: {name}",
            "root": name,
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "by": by,
            "measures": [{"name": m.name, "doc": m.doc, "better": m.better} for m in MEASURES],
            "groups": [dict(g, label=_label(g, by)) for g in to_json_rows(groups)],
            "n_episodes": len(rows),
            "episodes": [],
            "plots": plots,
            "replay": [],
            "notes": [],
            "lineage": _lineage(con, cfg.max_bytes, notes),
            "branches": branch_view(con, st, notes),
        }
        if cfg.compare:
            table = compare_groups(per, cfg.compare, cfg.baseline)
            payload["comparison"] = {"column": cfg.compare, "rows": to_json_rows(table)}
        _fill(con, payload, diag, rows, cfg, notes)
    finally:
        con.close()
    payload["notes"] = notes
    return payload


def _fill(
    con: Any, payload: dict, diag: EpisodeDiagnostics, rows: list[dict], cfg: ReportConfig, notes: list
) -> None:
    """Add the episode table and the replay under the cap (see the module docstring), and the notes."""
    per = diag.table
    base = len(render_html(payload).encode()) + _NOTE_RESERVE + embedded_size(notes)
    if base > cfg.max_bytes:
        raise ValueError(
            f"the report needs {_mb(base)} without any episode rows or replay, more than its cap of "
            f"{_mb(cfg.max_bytes)}: raise --max-mb, or group less finely (--by)"
        )
    room = cfg.max_bytes - base
    table = to_json_rows(per.select([c for c in _EPISODE_COLUMNS if c in per.column_names]))
    random.Random(cfg.seed).shuffle(table)
    table = table[: cfg.max_table_rows]
    sizes = [embedded_size(r) + 1 for r in table]
    guaranteed = _prefix(sizes, int(room * _TABLE_SHARE))

    chosen = sorted(rows, key=lambda r: (r["run_id"], r["episode_id"]))
    if len(chosen) > cfg.max_replay:
        chosen = random.Random(cfg.seed).sample(chosen, cfg.max_replay)
        notes.append(
            f"The replay holds {cfg.max_replay} of {len(rows)} episodes, sampled at random (seed {cfg.seed}); "
            "the diagnostics cover all of them."
        )
    budget = room - sum(sizes[:guaranteed])
    left_out = 0
    for start in range(0, len(chosen), _FETCH_CHUNK):
        part = chosen[start : start + _FETCH_CHUNK]
        if budget < _MIN_REPLAY_BYTES:  # nothing more can fit: do not read the rest
            left_out += len(part)
            continue
        rows_of = {t: _fetch(con, t, part) for t in ("episodes", "steps", "turns", "memory_ops")}
        for r in part:
            key = tuple(r[k] for k in KEY)
            record = episode_replay(
                rows_of["episodes"][key][0],
                rows_of["steps"][key],
                rows_of["turns"][key],
                rows_of["memory_ops"][key],
                quality=diag.quality[key],
            )
            size = embedded_size(record) + 1
            if size > budget:
                left_out += 1
                continue
            budget -= size
            payload["replay"].append(record)
    payload["replay"].sort(key=lambda rec: rec["id"])
    if left_out:
        notes.append(
            f"{left_out} sampled episode(s) were left out of the replay to keep the report under "
            f"{_mb(cfg.max_bytes)} (--max-mb)."
        )
    budget += sum(sizes[:guaranteed])
    shown = _prefix(sizes, budget)
    payload["episodes"] = sorted(table[:shown], key=lambda r: tuple(str(r[k]) for k in KEY))
    if shown < len(rows):
        why = f"to keep the report under {_mb(cfg.max_bytes)}" if shown < len(table) else "(--max-table-rows)"
        notes.append(
            f"The episode table lists {shown} of {len(rows)} episodes, sampled at random (seed {cfg.seed}) {why}; "
            "the diagnostics cover all of them."
        )


def _prefix(sizes: list[int], budget: int) -> int:
    """How many leading items fit in ``budget``."""
    total = 0
    for i, s in enumerate(sizes):
        total += s
        if total > budget:
            return i
    return len(sizes)


def _short(text: Any, limit: int) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _number(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _cut_diff(diff: str, limit: int = _DIFF_BYTES) -> tuple[str, bool]:
    """``diff`` at most ``limit`` UTF-8 bytes (cut after a whole line where possible), and whether it was cut."""
    data = diff.encode()
    if len(data) <= limit:
        return diff, False
    head = data[:limit].decode(errors="ignore")
    if "\n" in head:
        head = head[: head.rindex("\n") + 1]
    return head + f"\u2026 (diff cut: {len(head.encode())} of {len(data)} bytes shown)\n", True


def _lineage(con: Any, max_bytes: int, notes: list[str]) -> list[dict[str, Any]]:
    """Loop 1's candidate scaffolds as trees, one per evolve run (see the module docstring); [] without any.

    A node's ``parent`` is the ``iteration`` of the earlier node whose ``content_id`` is its ``parent_content_id``
    (None for the starting scaffold, or a parent not found); nodes without a scaffold of their own (an invalid
    patch, a reviewer error, no proposal) are leaves under the scaffold they were to revise (``leaf``).
    ``current`` marks the scaffold in force after the run's last iteration.
    """
    rows = con.sql(
        "SELECT * EXCLUDE (scaffold_yaml) FROM lineage ORDER BY evolve, iteration"
    ).to_arrow_table()
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows.to_pylist():
        runs.setdefault(r["evolve"], []).append(r)
    out: list[dict[str, Any]] = []
    diffs: list[tuple[int, dict[str, Any], str]] = []
    for name, items in runs.items():
        node_of: dict[str, int] = {}  # content id -> its node: the first start/accepted one, else the first
        for r in sorted(items, key=lambda r: (r["decision"] not in ("start", "accepted"), r["iteration"])):
            if r["content_id"]:
                node_of.setdefault(r["content_id"], r["iteration"])
        current_cid = items[-1]["current_content_id"]
        nodes = []
        for r in items:
            parent = node_of.get(r["parent_content_id"] or "")
            if parent is not None and parent >= r["iteration"]:
                parent = None  # never a cycle
            node: dict[str, Any] = {
                "iteration": r["iteration"],
                "parent": parent,
                "decision": r["decision"],
                "leaf": r["decision"] in _NO_SCAFFOLD or not r["content_id"],
                "current": bool(current_cid) and node_of.get(current_cid) == r["iteration"],
                "created_at": r["created_at"].isoformat(timespec="seconds") if r["created_at"] else None,
                **{k: _short(r[k], _TEXT_CHARS) for k in _LINEAGE_TEXT},
                **{k: _number(r[k]) for k in _LINEAGE_FIGURES},
                "diff": None,
                "diff_cut": False,
                "diff_left_out": False,
            }
            nodes.append(node)
            if r["diff"]:
                rank = 0 if r["decision"] == "accepted" else 1
                diffs.append((rank, node, r["diff"]))
        out.append({"evolve": name, "current_content_id": current_cid, "nodes": nodes})
    budget = int(max_bytes * _LINEAGE_SHARE)
    left_out = 0
    for _, node, diff in sorted(diffs, key=lambda d: d[0]):  # stable: by run and iteration within a rank
        text, cut = _cut_diff(diff)
        size = embedded_size(text)
        if size > budget:
            node["diff_left_out"] = True
            left_out += 1
            continue
        budget -= size
        node["diff"], node["diff_cut"] = text, cut
    if left_out:
        notes.append(
            f"The diffs of {left_out} lineage node(s) were left out to keep the report under {_mb(max_bytes)} "
            '(--max-mb); `automem query ROOT "SELECT diff FROM lineage"` has them all.'
        )
    return out


def _progression(rows: list[dict], by: list[str], seed: int, notes: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(_label(r, by), []).append(round(r["progression"], 4))
    sampled = [g for g, v in out.items() if len(v) > _STRIP_POINTS]
    rng = random.Random(seed)
    for g in sampled:
        out[g] = rng.sample(out[g], _STRIP_POINTS)
    if sampled:
        notes.append(
            f"The progression plot draws a random sample of {_STRIP_POINTS} episodes in each group that has "
            f"more ({len(sampled)} group(s)); its mean and interval cover every episode."
        )
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
    return {g: _bin([(t, s / n) for t, (s, n) in sorted(acc.items())], 1) for g, acc in sums.items()}


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
    return {g: _bin(points, 4) for g, points in series.items()}


def _fetch(con: Any, table: str, episodes: list[dict]) -> dict[tuple, list[dict]]:
    """All rows of ``table`` of some episodes, in one query, by episode key."""
    con.register("_wanted", pa.Table.from_pylist([{k: r[k] for k in KEY} for r in episodes]))
    try:
        rows = con.sql(f"SELECT * FROM {table} SEMI JOIN _wanted USING ({', '.join(KEY)})").to_arrow_table()
    finally:
        con.unregister("_wanted")
    out: dict[tuple, list[dict]] = {tuple(r[k] for k in KEY): [] for r in episodes}
    for row in rows.to_pylist():
        out[tuple(row[k] for k in KEY)].append(row)
    return out


__all__ = ["ReportConfig", "build_payload"]
