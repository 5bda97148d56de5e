"""The diagnostics table: every measure per group of episodes (by scaffold, model, ...), with intervals.

Each measure is a ratio of sums over the group's episodes (``Measure``), so an episode with many writes weighs
more in the redundant-write rate than one with few, exactly as if all the group's writes were pooled. Means
(progression, final memory size) have one unit of denominator per episode. The 95% interval comes from
resampling episodes (``stats.bootstrap_ci``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from automem.diagnostics.episodes import KEY, META, EpisodeDiagnostics, analyse_store
from automem.diagnostics.series import group_series
from automem.diagnostics.stats import bootstrap_ci, ratio
from automem.trajectory import Storage, connect, open_store


@dataclass(frozen=True)
class Measure:
    """One diagnostic: ``sum(num) / sum(den)`` over episodes (``den=None``: a mean per episode)."""

    name: str
    num: str
    den: str | None
    doc: str
    better: str = "lower"
    """``lower`` or ``higher``: which direction is an improvement (for comparisons)."""


MEASURES: tuple[Measure, ...] = (
    Measure("progression", "progression", None, "final progression of the env (0..1), mean", "higher"),
    Measure("redundant_write_rate", "redundant_writes", "writes", "writes that add no new line, per write"),
    Measure(
        "repeated_op_rate", "repeated_ops", "ops", "operations repeating one earlier in the same turn, per op"
    ),
    Measure("op_error_rate", "op_errors", "ops", "failed operations, per op"),
    Measure("parse_error_rate", "err_parse", "ops", "operations that could not be parsed, per op"),
    Measure("unknown_file_rate", "err_missing", "ops", "operations on a file that does not exist, per op"),
    Measure("quota_error_rate", "err_quota", "ops", "operations refused by a quota, per op"),
    Measure("path_error_rate", "err_path", "ops", "operations with an unsafe or bad path, per op"),
    Measure("empty_search_rate", "empty_searches", "searches", "searches that found nothing, per search"),
    Measure(
        "unproductive_rate", "unproductive_actions", "assessed_actions", "valid actions changing no state"
    ),
    Measure("invalid_action_rate", "invalid_actions", "steps", "invalid actions (default taken), per step"),
    Measure(
        "memory_utility",
        "lines_read_back",
        "lines_written",
        "written lines later returned by a read",
        "higher",
    ),
    Measure(
        "linked_read_rate",
        "linked_reads",
        "reads",
        "reads returning a line the agent wrote (provenance), per read",
        "higher",
    ),
    Measure("memory_bytes", "memory_bytes", None, "final memory size in bytes, mean"),
    Measure("memory_lines", "memory_lines", None, "final memory lines, mean"),
    Measure("memory_files", "memory_files", None, "final memory files, mean"),
    Measure("tokens_per_step", "tokens", "steps", "prompt + completion tokens per step"),
    Measure("llm_s_per_step", "llm_seconds", "steps", "seconds waiting for the model per step"),
    Measure(
        "tokens_per_point", "tokens", "progression_points", "tokens per progression point (1% of the game)"
    ),
    Measure(
        "llm_s_per_point",
        "llm_seconds",
        "progression_points",
        "seconds waiting for the model per progression point (1% of the game)",
    ),
)
BY_ALIASES = {
    "scaffold": "scaffold_id",
    "scaffold_content": "scaffold_content_id",
    "model": "memory_model",
    "memory_model": "memory_model",
    "action_model": "action_model",
    "env": "env_id",
    "run": "run_id",
}


def resolve_by(by: Sequence[str] | str | None) -> list[str]:
    """Column names for grouping keys given as aliases (``scaffold,model``) or column names."""
    if by is None:
        return []
    items = [b.strip() for b in by.split(",")] if isinstance(by, str) else list(by)
    return [BY_ALIASES.get(b, b) for b in items if b]


def check_columns(per_episode: pa.Table, columns: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` naming the ``columns`` a per-episode table lacks, after ``what`` (``--by``)."""
    unknown = [c for c in columns if c not in per_episode.column_names]
    if unknown:
        raise ValueError(
            f"{what} {', '.join(unknown)}: not a column; use an alias ({', '.join(BY_ALIASES)}) or one of "
            f"{', '.join((*KEY, *META))}"
        )


def group_rows(table: pa.Table, by: Sequence[str]) -> dict[tuple, list[int]]:
    """The row numbers of each distinct value of the ``by`` columns, in order of first appearance (no ``by``:
    one group ``()`` of every row)."""
    keys = zip(*(table.column(b).to_pylist() for b in by), strict=True) if by else [()] * table.num_rows
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def units(table: pa.Table, m: Measure) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode numerators and denominators of a measure."""
    num = np.asarray(table.column(m.num).to_numpy(zero_copy_only=False), float)
    den = (
        np.ones_like(num)
        if m.den is None
        else np.asarray(table.column(m.den).to_numpy(zero_copy_only=False), float)
    )
    return num, den


def aggregate(
    per_episode: pa.Table,
    by: Sequence[str] = (),
    *,
    ci: bool = True,
    sizes: Mapping[tuple, Mapping[int, tuple[int, int, int]]] | None = None,
) -> pa.Table:
    """One row per group: its keys, episodes, steps, and each measure with ``_lo``/``_hi`` interval bounds.

    Args:
        per_episode: ``EpisodeDiagnostics.table``.
        by: grouping columns (``resolve_by`` turns aliases into columns); empty for one row over everything.
        ci: compute bootstrap intervals (the report and ``--json`` want them; they cost ~1 ms per measure).
        sizes: ``EpisodeDiagnostics.sizes``; when given, each row also has ``memory_by_step``, the group's
            memory size over steps (``series.group_series``: at most ``series.BUCKETS`` points).

    Raises:
        ValueError: a grouping column that the per-episode table does not have.
    """
    by = list(by)
    if per_episode.num_rows == 0 or "ops" not in per_episode.column_names:
        return pa.table({"episodes": pa.array([], pa.int64())})
    check_columns(per_episode, by, "cannot group by")
    groups = group_rows(per_episode, by)
    rows: list[dict[str, Any]] = []
    for k in sorted(groups, key=lambda g: tuple("" if v is None else str(v) for v in g)):
        part = per_episode.take(pa.array(groups[k]))
        row: dict[str, Any] = dict(zip(by, k, strict=True))
        row["episodes"] = part.num_rows
        row["steps"] = int(pc.sum(part.column("steps")).as_py() or 0)
        for m in MEASURES:
            num, den = units(part, m)
            row[m.name] = ratio(num, den)
            if ci:
                row[m.name + "_lo"], row[m.name + "_hi"] = bootstrap_ci(num, den)
        if sizes is not None:
            keys_of = zip(*(part.column(k).to_pylist() for k in KEY), strict=True)
            steps = part.column("steps").to_pylist()
            row["memory_by_step"] = group_series(
                (sizes.get(k, {}), n or 0) for k, n in zip(keys_of, steps, strict=True)
            )
        rows.append(row)
    return pa.Table.from_pylist(rows)


@dataclass
class Diagnosis:
    """What ``diagnose`` returns: the grouped table, the per-episode rows, and memory sizes over steps."""

    table: pa.Table
    episodes: EpisodeDiagnostics
    by: list[str]


def diagnose(
    root: Any,
    by: Sequence[str] | str | None = ("scaffold", "model"),
    *,
    episodes: str | None = None,
    ci: bool = True,
) -> Diagnosis:
    """Diagnostics of the committed episodes of a store, grouped.

    Args:
        root: local folder or ``s3://bucket/prefix`` (checked by ``automem.trajectory.open_store``), or a
            ``Storage``, used as it is (one from ``open_store``: a missing local folder raises
            ``FileNotFoundError``, an empty store gives an empty table).
        by: grouping keys: aliases ``scaffold``, ``scaffold_content``, ``model`` (the memory model),
            ``action_model``, ``env``, ``run``, or a key or metadata column of ``episodes`` (``episodes.KEY``,
            ``episodes.META``).
        episodes: restrict to some episodes (ids, or a SQL query returning ``episode_id``).
        ci: compute 95% bootstrap intervals.

    Raises:
        StoreError: no store at a ``root`` given as a folder or URI (``automem.trajectory.open_store``).
        ValueError: an unknown grouping column or episode selection.
    """
    st = root if isinstance(root, Storage) else open_store(root)
    con = connect(st, episodes=episodes)
    try:
        per = analyse_store(con)
    finally:
        con.close()
    cols = resolve_by(by)
    return Diagnosis(aggregate(per.table, cols, ci=ci, sizes=per.sizes), per, cols)


__all__ = [
    "BY_ALIASES",
    "MEASURES",
    "Diagnosis",
    "Measure",
    "aggregate",
    "check_columns",
    "diagnose",
    "group_rows",
    "resolve_by",
    "units",
]
