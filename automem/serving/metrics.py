"""The engine's prefix-cache counters, read from a Ray metrics agent's Prometheus page.

Ray Serve LLM records vLLM's metrics through Ray, whose agent exports them every ``metrics_report_interval_ms``
(10 s by default), so a read right after a request can still show the counters from before it; two equal reads a
few seconds apart can both be stale. No Ray here: the caller passes the page's URL
(:func:`actors.cluster.metrics_url` for this node's agent).
"""

from __future__ import annotations

import re
import time

import httpx

EXPORT_INTERVAL_S = 10.0
"""Ray's default metrics export interval."""


def metric_total(text: str, name: str) -> float:
    """The sum over every series of the vLLM metric ``name`` (e.g. ``prefix_cache_hits``) on a Prometheus page."""
    pattern = re.compile(rf"^ray_vllm[:_]{name}(_total)?\{{")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if pattern.match(line))


def prefix_cache_counters(
    metrics_url: str, *, at_least: float = 0, timeout_s: float = 180, poll_s: float = 6
) -> tuple[float, float]:
    """``(queried, hit)`` prompt tokens of the prefix cache, once the agent has exported at least ``at_least``
    queried tokens and three reads over more than one export interval agree.

    vLLM counts each request's whole prompt as queried, so a caller that knows its prompts' lengths can say how
    far the counter must have come (its own requests included).

    Raises:
        TimeoutError: the counters did not get there within ``timeout_s``; the message has the last reads.
    """
    reads: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = httpx.get(metrics_url, timeout=30).text
        except httpx.HTTPError:
            text = ""
        reads.append((metric_total(text, "prefix_cache_queries"), metric_total(text, "prefix_cache_hits")))
        if len(reads) >= 3 and reads[-1] == reads[-2] == reads[-3] and reads[-1][0] >= at_least:
            return reads[-1]
        time.sleep(poll_s)
    raise TimeoutError(
        f"prefix-cache counters at {metrics_url} did not reach {at_least} queried tokens and settle within "
        f"{timeout_s:.0f} s: last reads {reads[-3:]}"
    )
