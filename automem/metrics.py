"""Operational metrics: what the runner, the trajectory writer and training count, and the seam they count through.

The domain code calls a :class:`MetricsSink` with one of the :data:`METRICS` declared here; it never imports Ray.
``actors/metrics.py`` implements the sink with ``ray.util.metrics``, whose agent exports each metric on the node's
Prometheus page (``actors.cluster.metrics_url()``) as ``ray_<name>`` (counters as ``ray_<name>_total``), about every
10 s; ``deploy/grafana/automem.json`` charts them beside vLLM's own engine metrics. The default sink,
:data:`NO_METRICS`, does nothing; :class:`RecordingMetrics` keeps values in memory for tests.

Tags stay low-cardinality on purpose (run, environment, model): never an episode id, whose every value would be a
new time series.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BOUNDARIES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds; Ray's exporter approximates a histogram's ``_sum`` from bucket midpoints, so keep them fine."""
PROGRESSION_BOUNDARIES = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Progression is a fraction in [0, 1]; Ray wants positive bounds, so the first bucket (<= 0.001) means none."""


@dataclass(frozen=True)
class Metric:
    """One metric: its name (``automem_...``), kind, help text and the tag keys every record of it carries."""

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()
    """Histogram bucket upper bounds: positive and increasing (Ray refuses others)."""

    def __post_init__(self) -> None:
        bounds = self.boundaries
        if (
            (self.kind == "histogram") != bool(bounds)
            or any(b <= 0 for b in bounds)
            or list(bounds) != sorted(set(bounds))
        ):
            raise ValueError(f"{self.name}: a histogram needs positive increasing boundaries, others none")

    @property
    def exported(self) -> str:
        """The series name on Ray's Prometheus page (histograms add ``_bucket``, ``_count``, ``_sum``)."""
        return f"ray_{self.name}_total" if self.kind == "counter" else f"ray_{self.name}"


EPISODE_TAGS = ("run_id", "env")

EPISODES_COMMITTED = Metric("automem_episodes_committed", "counter", "Episodes committed.", EPISODE_TAGS)
EPISODES_FAILED = Metric("automem_episodes_failed", "counter", "Episode attempts that failed.", EPISODE_TAGS)
STEPS = Metric("automem_steps", "counter", "Environment steps played.", EPISODE_TAGS)
PROGRESSION = Metric(
    "automem_progression",
    "histogram",
    "Progression of each committed episode.",
    EPISODE_TAGS,
    PROGRESSION_BOUNDARIES,
)
MEMORY_OP_ERRORS = Metric(
    "automem_memory_op_errors", "counter", "Memory operations that returned an error.", EPISODE_TAGS
)
LLM_INFLIGHT = Metric(
    "automem_llm_requests_inflight", "gauge", "Model requests open in this runner (sum over workers)."
)
LLM_LATENCY = Metric(
    "automem_llm_request_latency_seconds",
    "histogram",
    "Model request latency, retries included.",
    ("model",),
    LATENCY_BOUNDARIES,
)
LLM_ERRORS = Metric(
    "automem_llm_request_errors", "counter", "Model requests that failed after retries.", ("model",)
)
LLM_TOKENS = Metric(
    "automem_llm_tokens",
    "counter",
    "Tokens of model requests (kind: prompt or completion).",
    ("model", "kind"),
)
COMMIT_LATENCY = Metric(
    "automem_commit_latency_seconds",
    "histogram",
    "Time to commit one episode (stage, record, publish).",
    ("run_id",),
    LATENCY_BOUNDARIES,
)
BYTES_WRITTEN = Metric(
    "automem_bytes_written", "counter", "Arrow bytes of trajectory rows written to the store.", ("run_id",)
)
TRAIN_STEPS = Metric("automem_train_steps", "counter", "Optimizer steps of the training job.", ("run",))
TRAIN_LOSS = Metric("automem_train_loss", "gauge", "Training loss at the last logged step.", ("run",))
TRAIN_TOKENS = Metric("automem_train_tokens", "counter", "Tokens the training job has trained on.", ("run",))

METRICS: tuple[Metric, ...] = (
    EPISODES_COMMITTED,
    EPISODES_FAILED,
    STEPS,
    PROGRESSION,
    MEMORY_OP_ERRORS,
    LLM_INFLIGHT,
    LLM_LATENCY,
    LLM_ERRORS,
    LLM_TOKENS,
    COMMIT_LATENCY,
    BYTES_WRITTEN,
    TRAIN_STEPS,
    TRAIN_LOSS,
    TRAIN_TOKENS,
)
"""Every metric automem defines (the dashboard test checks each has a panel)."""


class MetricsSink(Protocol):
    """Where the domain code records metrics. ``tags`` must hold exactly the metric's tag keys."""

    def inc(self, metric: Metric, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` to a counter."""

    def set(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        """Set a gauge."""

    def observe(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        """Record one value of a histogram."""


class NoMetrics:
    """The default sink: records nothing."""

    def inc(self, metric: Metric, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def set(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        pass

    def observe(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        pass


NO_METRICS = NoMetrics()


def check_record(metric: Metric, kind: Kind, tags: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """The tags as a sorted tuple, after checking the call fits the metric (as Ray would refuse it).

    Raises:
        ValueError: wrong kind, or tag keys other than the metric's.
    """
    if metric.kind != kind:
        raise ValueError(f"{metric.name} is a {metric.kind}, not a {kind}")
    tags = tags or {}
    if set(tags) != set(metric.tags):
        raise ValueError(f"{metric.name} takes tags {sorted(metric.tags)}, got {sorted(tags)}")
    return tuple(sorted((k, str(v)) for k, v in tags.items()))


class RecordingMetrics:
    """A sink that keeps every record in memory (tests): counter totals, last gauge values, histogram samples."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)

    def inc(self, metric: Metric, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value < 0:
            raise ValueError(f"{metric.name}: a counter only goes up (got {value})")
        self.counters[metric.name, check_record(metric, "counter", tags)] += value

    def set(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        self.gauges[metric.name, check_record(metric, "gauge", tags)] = value

    def observe(self, metric: Metric, value: float, tags: dict[str, str] | None = None) -> None:
        self.samples[metric.name, check_record(metric, "histogram", tags)].append(value)

    def total(self, metric: Metric) -> float:
        """A counter's total over all tag values."""
        return sum(v for (name, _), v in self.counters.items() if name == metric.name)

    def values(self, metric: Metric) -> list[float]:
        """A histogram's samples over all tag values."""
        return [x for (name, _), xs in self.samples.items() if name == metric.name for x in xs]

    def gauge(self, metric: Metric, **tags: str) -> float | None:
        """A gauge's last value for these tags."""
        return self.gauges.get((metric.name, tuple(sorted(tags.items()))))
