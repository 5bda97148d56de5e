"""automem's metrics through Ray's metrics agent: the :class:`automem.metrics.MetricsSink` that Ray actors use.

Each metric object is made on first use, in the process that records it (an actor's worker), as
``ray.util.metrics`` wants. The node's agent exports them on its Prometheus page (``actors.cluster.metrics_url()``)
as ``ray_<name>`` (counters ``ray_<name>_total``) every ``metrics_report_interval_ms`` (10 s by default), with Ray's
own labels (``WorkerId``, ``NodeAddress``, ...) beside the metric's tags: a gauge is per worker, so sum it.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.util import metrics as ray_metrics

from automem.metrics import Kind, Metric, check_record

log = logging.getLogger(__name__)


class RayMetrics:
    """A :class:`automem.metrics.MetricsSink` over ``ray.util.metrics`` (Counter, Gauge, Histogram).

    A metric that cannot be recorded is logged once and skipped: counting must never fail an episode.
    """

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}
        self._broken: set[str] = set()

    def _record(
        self, metric: Metric, kind: Kind, how: str, value: float, tags: dict[str, str] | None
    ) -> None:
        if metric.name in self._broken:
            return
        try:
            made, t = self._metric(metric, kind, tags)
            getattr(made, how)(value, tags=t or None)
        except Exception:  # noqa: BLE001 - see the class docstring
            self._broken.add(metric.name)
            log.exception("metric %s cannot be recorded; skipping it from now on", metric.name)

    def _metric(self, metric: Metric, kind: Kind, tags: dict[str, str] | None) -> tuple[Any, dict[str, str]]:
        check_record(metric, kind, tags)  # Ray would raise on a missing tag key; say which metric
        made = self._made.get(metric.name)
        if made is None:
            keys = metric.tags or None
            if kind == "counter":
                made = ray_metrics.Counter(metric.name, metric.description, tag_keys=keys)
            elif kind == "gauge":
                made = ray_metrics.Gauge(metric.name, metric.description, tag_keys=keys)
            else:
                made = ray_metrics.Histogram(
                    metric.name, metric.description, boundaries=list(metric.boundaries), tag_keys=keys
                )
            self._made[metric.name] = made
        return made, {k: str(v) for k, v in (tags or {}).items()}

    def inc(self, metric: Metric, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value <= 0:
            return  # Ray's Counter refuses 0 and below; nothing to add
        self._record(metric, "counter", "inc", value, tags)

    def set(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        self._record(metric, "gauge", "set", value, tags)

    def observe(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        self._record(metric, "histogram", "observe", value, tags)
