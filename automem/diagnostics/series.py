"""Memory size over steps, in a bounded form: at most ``BUCKETS`` points per episode or per group.

An episode's size after step ``t`` is its memory's (bytes, lines, files) once step ``t``'s operations ran,
carried forward over steps without operations (``episodes.size_series``). The steps ``0..n-1`` are split into
``BUCKETS`` ranges of equal width and each point is the size after the last step of its range, so a long
episode yields as many points as a short one. For a group, the ranges split the group's longest episode, and each
point summarises the episodes still running at that step: their count, mean, 10th/50th/90th percentile and
maximum of bytes, and mean lines and files.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

BUCKETS = 10
Sizes = Mapping[int, tuple[int, int, int]]


def bucket_ends(n_steps: int, buckets: int = BUCKETS) -> list[int]:
    """The last step of each of ``buckets`` equal ranges of ``0..n_steps-1`` (fewer when there are fewer steps)."""
    if n_steps <= 0:
        return []
    return sorted({-(-(k + 1) * n_steps // buckets) - 1 for k in range(buckets)})


def size_at(sizes: Sizes, steps_with_ops: Sequence[int], t: int) -> tuple[int, int, int]:
    """(bytes, lines, files) after step ``t``: the last step at or before ``t`` that had operations."""
    i = bisect.bisect_right(steps_with_ops, t)
    return sizes[steps_with_ops[i - 1]] if i else (0, 0, 0)


def episode_series(sizes: Sizes, n_steps: int, buckets: int = BUCKETS) -> list[dict[str, int]]:
    """One episode's memory size at the ends of its step ranges: ``{step, bytes, lines, files}`` each."""
    known = sorted(sizes)
    out = []
    for t in bucket_ends(n_steps, buckets):
        b, n, f = size_at(sizes, known, t)
        out.append({"step": t, "bytes": b, "lines": n, "files": f})
    return out


def group_series(episodes: Iterable[tuple[Sizes, int]], buckets: int = BUCKETS) -> list[dict[str, Any]]:
    """A group's memory size over steps from its episodes' ``(sizes, steps)``; see the module docstring."""
    eps = [(sizes, sorted(sizes), n) for sizes, n in episodes]
    longest = max((n for _, _, n in eps), default=0)
    out: list[dict[str, Any]] = []
    for t in bucket_ends(longest, buckets):
        at = np.array([size_at(s, known, t) for s, known, n in eps if n > t], dtype=float).reshape(-1, 3)
        p10, p50, p90 = np.quantile(at[:, 0], [0.1, 0.5, 0.9])
        out.append(
            {
                "step": t,
                "episodes": len(at),
                "bytes_mean": float(at[:, 0].mean()),
                "bytes_p10": float(p10),
                "bytes_p50": float(p50),
                "bytes_p90": float(p90),
                "bytes_max": int(at[:, 0].max()),
                "lines_mean": float(at[:, 1].mean()),
                "files_mean": float(at[:, 2].mean()),
            }
        )
    return out


__all__ = ["BUCKETS", "bucket_ends", "episode_series", "group_series", "size_at"]
