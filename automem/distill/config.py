"""``DatasetConfig``: which memory turns of a store become a Loop 2 dataset, as one strict, documented model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from automem.config import StrictConfig
from automem.rollout.jobs import SeedList, parse_seeds


class DatasetConfig(StrictConfig):
    """A dataset build: its sources, the selection, and what is held out.

    The id of the dataset is derived from its rows and from the fields that define the selection (``strategy``,
    ``quantile``, ``holdout_seeds``, ``phases``, ``dedupe``), never from where the store lies: the same store read
    from a copy gives the same dataset.
    """

    source: str
    """The trajectory store to read: a folder or ``s3://bucket/prefix``."""
    run_id: str | None = None
    """Only this run of the store; None: every run."""
    strategy: str = "wellformed"
    """Selection strategies joined by ``+`` (a turn must pass each): ``wellformed``, ``utility``, ``outcome``,
    ``judge`` (a model grades each turn; needs ``judge_url`` and ``judge_model``)."""
    quantile: float = Field(0.5, ge=0.0, le=1.0)
    """``outcome``: keep episodes at or above this quantile of progression among the episodes of the same env and
    seed (0.5: the median)."""
    holdout_seeds: str | None = None
    """Seeds never trained on (the evaluation's), e.g. ``"1000-1031"``; their episodes are left out and the list
    is recorded in the manifest. None: nothing held out."""
    phases: tuple[str, ...] = ("log", "plan")
    """Which memory phases give examples."""
    dedupe: bool = True
    """Drop exact duplicates (same prompt and same post-processed completion), keeping the first in source order."""
    credit_store: str | None = None
    """``counterfactual``: the store of the credit runs (``automem branch credit --out``); None: ``source``."""
    credit_min: float = 0.0
    """``counterfactual``: keep turns whose credit is above this (in ``credit_measure``; 0: any gain)."""
    credit_measure: Literal["progression", "op_errors_per_step"] = "progression"
    """``counterfactual``: what credits are in: progression with the turn minus without it, or the failed memory
    operations per step it spared the rest of the game."""
    judge_url: str | None = None
    """``judge``: the OpenAI-compatible endpoint of the grading model, e.g. ``http://127.0.0.1:8000/v1``."""
    judge_model: str | None = None
    """``judge``: the grading model's name at ``judge_url``."""
    judge_min_score: float = Field(0.7, ge=0.0, le=1.0)
    """``judge``: keep turns whose grade (0-10, divided by 10) is at least this."""
    judge_concurrency: int = Field(16, ge=1)
    """``judge``: requests in flight at once."""

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from automem.distill.strategies import parse_strategy

        parse_strategy(value)
        return value

    @field_validator("holdout_seeds")
    @classmethod
    def _seed_list(cls, value: str | None) -> str | None:
        if value is not None:
            parse_seeds(value)
        return value

    @field_validator("phases")
    @classmethod
    def _memory_phases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in value if p not in ("log", "plan")]
        if bad or not value:
            raise ValueError(f"phases are log and/or plan, not {', '.join(bad) or 'none'}")
        return value

    @model_validator(mode="after")
    def _judge_endpoint(self) -> DatasetConfig:
        if "judge" in self.strategy.split("+") and not (self.judge_url and self.judge_model):
            raise ValueError("the judge strategy needs judge_url and judge_model")
        return self

    def held_out(self) -> SeedList | None:
        """The held-out seeds as a seed list (ranges kept as ranges), or None."""
        return parse_seeds(self.holdout_seeds) if self.holdout_seeds is not None else None

    def selection(self) -> dict[str, object]:
        """The fields that define the dataset's rows, as plain JSON values (hashed into the id, recorded)."""
        out: dict[str, object] = {
            "strategy": self.strategy,
            "quantile": self.quantile,
            "holdout_seeds": self.holdout_seeds,
            "phases": list(self.phases),
            "dedupe": self.dedupe,
        }
        if "judge" in self.strategy.split("+"):  # only then: the ids of other datasets stay as they were
            out |= {"judge_model": self.judge_model, "judge_min_score": self.judge_min_score}
        if "counterfactual" in self.strategy.split(
            "+"
        ):  # the content hash covers which turns the credits kept
            out |= {"credit_min": self.credit_min, "credit_measure": self.credit_measure}
        return out
