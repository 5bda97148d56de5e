"""Training's metrics: a Hugging Face ``TrainerCallback`` that counts optimizer steps and trained tokens and keeps
the last loss, through any :class:`automem.metrics.MetricsSink` (Ray's, from ``actors/training.py``)."""

from __future__ import annotations

from typing import Any

from automem.metrics import TRAIN_LOSS, TRAIN_STEPS, TRAIN_TOKENS, MetricsSink


def metrics_callback(sink: MetricsSink, run: str) -> Any:
    """A ``TrainerCallback`` recording ``automem_train_*`` tagged ``run``: steps at each step's end, the loss and
    the tokens (TRL's cumulative ``num_tokens``, counted as increments) at each log."""
    from transformers import TrainerCallback

    tags = {"run": run}

    class MetricsCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.step: int | None = None
            self.tokens: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # A resumed run starts at its checkpoint's step: count only the steps taken here.
            if self.step is not None and state.global_step > self.step:
                sink.inc(TRAIN_STEPS, state.global_step - self.step, tags)
            elif self.step is None:
                sink.inc(TRAIN_STEPS, 1, tags)
            self.step = state.global_step

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            if "loss" in logs:
                sink.set(TRAIN_LOSS, float(logs["loss"]), tags)
            if "num_tokens" in logs:
                total = float(logs["num_tokens"])
                if self.tokens is not None and total > self.tokens:
                    sink.inc(TRAIN_TOKENS, total - self.tokens, tags)
                elif self.tokens is None:
                    sink.inc(TRAIN_TOKENS, total, tags)
                self.tokens = total

    return MetricsCallback()
