"""Recipe search for Loop 2 (issue 15, item 4): Ray Tune trials over a declared space of training recipes.

Each trial is one recipe: a selection strategy, a preset, and optionally a number of epochs or steps and a learning
rate. It builds its dataset (or reuses it: a dataset's id is its content), trains an adapter on Ray Train (nested in
the trial), publishes it to the endpoint, and runs the paired turn-level evaluation (:mod:`turn_eval`) on the
*tuning* seeds; the evaluation is appended to the store's ledger. The best trial by the declared metric (an
adapter-minus-base difference, e.g. ``free.wellformed_share``) is then evaluated once on the *held-out* seeds.
Both seed sets are kept out of every trial's dataset. This module holds what needs no Ray (the search's
declaration, one trial, the conclusion); ``actors.search.run_search`` runs the trials as Ray Tune trials.

Everything lands under ``<out>/searches/<name>/``: ``search.json`` (the search as declared; a resumed search must
match it), ``tune/`` (Tune's experiment storage: a killed search resumes from it with the same command),
``trials/<key>/`` (each recipe's adapter and training checkpoints, keyed by the recipe, so a restarted trial
resumes its training and a finished one is never trained again) and ``result.json`` (every trial and the best).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from automem.config import StrictConfig
from automem.distill.turn_eval import METRICS, MODES

SEARCHES_DIR = "searches"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
SEARCH_FILE = "search.json"
RESULT_FILE = "result.json"
HELDOUT_FILE = "heldout.json"
RECIPE = "recipe"
"""The one Tune parameter: a whole recipe (a grid over recipes, so each trial's config is the recipe itself)."""

LOWER_IS_BETTER = frozenset({"n_failed", "redundant_writes", "repeated_ops"})
"""Metrics where a smaller adapter-minus-base difference is better (the search minimises them)."""


class SearchError(ValueError):
    """A search that cannot run as declared (bad space, a resumed search declared differently, no turns)."""


class SearchSpace(StrictConfig):
    """The recipes to try: the grid of every combination of these lists."""

    strategy: list[str] = Field(default_factory=lambda: ["clean"], min_length=1)
    """Dataset selection strategies (``automem distill dataset --strategy``), e.g. ``[clean, wellformed]``."""
    preset: list[str] = Field(default_factory=lambda: ["cpu-small"], min_length=1)
    """Training presets (``automem distill train --preset``)."""
    epochs: list[float] | None = None
    """Passes over the dataset; None: the preset's (a preset sized in steps ignores epochs: give max_steps)."""
    max_steps: list[int] | None = None
    """Optimizer steps; None: the preset's."""
    learning_rate: list[float] | None = None
    """Peak learning rates; None: the preset's."""

    @field_validator("strategy")
    @classmethod
    def _strategies(cls, value: list[str]) -> list[str]:
        from automem.distill.strategies import parse_strategy

        for spec in value:
            parse_strategy(spec)  # raises ValueError naming the unknown strategy
        return value

    @field_validator("preset")
    @classmethod
    def _presets(cls, value: list[str]) -> list[str]:
        from automem.training.config import preset_path

        for name in value:
            preset_path(name)  # raises ConfigError (a ValueError) listing the presets
        return value

    def grid(self) -> list[dict[str, Any]]:
        """Every recipe, in a fixed order (fields with None are left to the preset)."""
        axes = {k: v for k, v in self.model_dump().items() if v is not None}
        keys = list(axes)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(axes[k] for k in keys))]


class SearchConfig(StrictConfig):
    """A recipe search: where the episodes are, the space, the seeds, the metric and how to evaluate."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    """The search's name: its folder ``<out>/searches/<name>`` and the prefix of its adapters' names."""
    source: str
    """The trajectory store whose episodes become datasets and evaluation turns (a folder or ``s3://``)."""
    out: str
    """A local folder for datasets (``datasets/``) and the search (``searches/<name>/``)."""
    run_id: str | None = None
    """Only this run's episodes become datasets; None: every run."""
    eval_run: str | None = None
    """Only this run's turns are evaluated; None: every run (by seed)."""
    tuning_seeds: str
    """Seeds whose turns score each trial (never trained on)."""
    heldout_seeds: str | None = None
    """Seeds the best trial is evaluated on once at the end (never trained or tuned on); None: no final eval."""
    space: SearchSpace = Field(default_factory=SearchSpace)
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` training overrides applied to every trial (e.g. ``max_length=1024``)."""
    metric: str = "free.wellformed_share"
    """``<mode>.<metric>`` of the adapter-minus-base difference that ranks trials."""
    eval_limit: int | None = Field(100, ge=1)
    """At most this many turns per evaluation (spread over the seeds)."""
    eval_modes: tuple[str, ...] = MODES
    max_tokens: int = Field(120, ge=1)
    concurrency: int = Field(16, ge=1)
    """Evaluation requests in flight."""
    parallel: int | None = Field(None, ge=1)
    """Trials at once; None: as many as the cluster's CPUs (capped by this machine's cores on one node) hold."""

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        mode, _, metric = value.partition(".")
        if mode not in MODES or metric not in METRICS:
            raise ValueError(
                f"metric {value!r}: use <mode>.<metric> with mode one of {', '.join(MODES)} "
                f"and metric one of {', '.join(METRICS)}"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        from automem.rollout.jobs import parse_seeds

        tuning = set(parse_seeds(self.tuning_seeds))
        if self.heldout_seeds:
            overlap = tuning & set(parse_seeds(self.heldout_seeds))
            if overlap:
                raise ValueError(f"tuning and held-out seeds overlap (e.g. {min(overlap)}): keep them apart")
        if self.metric.partition(".")[0] not in self.eval_modes:
            raise ValueError(
                f"metric {self.metric!r} needs mode {self.metric.partition('.')[0]!r} in eval_modes"
            )
        return self

    def training_configs(self) -> list[Any]:
        """Each preset of the space with the search's overrides (raises ConfigError naming a bad override)."""
        from automem.training import load_distill_config

        return [
            load_distill_config(dataset="-", preset=p, overrides=self.overrides) for p in self.space.preset
        ]

    @property
    def direction(self) -> Literal["max", "min"]:
        return "min" if self.metric.partition(".")[2] in LOWER_IS_BETTER else "max"

    @property
    def folder(self) -> Path:
        return Path(self.out).resolve() / SEARCHES_DIR / self.name

    def excluded_seeds(self) -> str:
        """Tuning and held-out seeds together: what no trial may train on."""
        return ",".join(s for s in (self.tuning_seeds, self.heldout_seeds) if s)


def recipe_key(recipe: dict[str, Any]) -> str:
    """A short id of a recipe (the same recipe, the same folder and adapter name)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class Evaluation:
    """The turn-level evaluation of one adapter: its comparisons and the ledger row written for it."""

    adapter: str
    seeds: str
    turns: int
    comparisons: list[dict[str, Any]]
    cost: dict[str, Any]
    ledger: str | None = None

    def value(self, metric: str) -> float:
        mode, _, name = metric.partition(".")
        for c in self.comparisons:
            if c["mode"] == mode and c["metric"] == name:
                return float(c["diff"])
        raise SearchError(f"the evaluation has no {metric}")


@dataclass
class Endpoint:
    """Where trials' adapters are asked: a base URL, the base model, and whether adapters must be published
    there first (automem's own endpoint) or are already served by name (any other URL, e.g. the stub)."""

    url: str
    base_model: str
    publish: bool


@dataclass
class TrialResult:
    recipe: dict[str, Any]
    key: str
    adapter: str
    adapter_dir: str
    dataset_id: str
    dataset_rows: int
    train_loss_first: float | None
    train_loss_last: float | None
    train_seconds: float | None
    score: float
    evaluation: dict[str, Any] = field(default_factory=dict)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def publish(adapter_dir: str | Path, name: str, say: Callable[[str], None] = _say) -> str:
    """Publish an adapter to automem's running endpoint (``automem model publish --replace``) and wait until it
    answers; returns the model name to request.

    A separate process: publishing talks to the endpoint's registry and waits for its merged copy, independent of
    the Ray cluster this trial runs in.
    """
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "model", "publish", str(adapter_dir), name, "--replace"],
        capture_output=True,
        text=True,
    )
    if res.returncode:
        raise SearchError(f"publishing {name} failed: {' '.join(res.stderr.split())[-500:]}")
    say(f"published {res.stdout.strip()}")
    return res.stdout.strip().splitlines()[-1]


def evaluate(
    config: SearchConfig,
    endpoint: Endpoint,
    adapter_name: str,
    lineage: dict[str, Any] | None,
    seeds: str,
    say: Callable[[str], None] = _say,
) -> Evaluation:
    """The paired turn-level evaluation of ``<base>:<adapter_name>`` on ``seeds``, appended to the ledger."""
    from automem.distill.ledger import append, ledger_row
    from automem.distill.turn_eval import evaluate_turns, select_turns
    from automem.llm.client import OpenAIChatClient

    turns = select_turns(config.source, run_id=config.eval_run, seeds=seeds, limit=config.eval_limit)
    model = f"{endpoint.base_model}:{adapter_name}"
    say(f"evaluating {model} on {len(turns)} turns of seeds {seeds}")
    result = evaluate_turns(
        OpenAIChatClient(endpoint.url),
        turns,
        base=endpoint.base_model,
        adapter=model,
        modes=config.eval_modes,
        max_tokens=config.max_tokens,
        concurrency=config.concurrency,
    )
    comparisons = [asdict(c) for c in result.comparisons]
    row = ledger_row(
        adapter=model,
        base_model=endpoint.base_model,
        lineage=lineage,
        source_run=config.eval_run,
        seeds=seeds,
        turns=len(turns),
        modes=list(config.eval_modes),
        comparisons=comparisons,
        cost=result.cost,
    )
    path, _ = append(config.source, row)
    return Evaluation(model, seeds, len(turns), comparisons, result.cost, path)


def trial_overrides(config: SearchConfig, recipe: dict[str, Any]) -> list[str]:
    """The training overrides of one recipe: the search's, then the recipe's epochs, steps and learning rate."""
    return list(config.overrides) + [
        f"{k}={recipe[k]}" for k in ("epochs", "max_steps", "learning_rate") if k in recipe
    ]


def trial_lineage(config: SearchConfig, recipe: dict[str, Any], adapter_dir: str | Path) -> dict[str, Any]:
    """What the ledger records of a trial's adapter: its ``training.json``, the strategy and the overrides."""
    record = json.loads((Path(adapter_dir) / "training.json").read_text())
    overrides = trial_overrides(config, recipe)
    return {
        **record,
        "strategy": recipe["strategy"],
        "overrides": {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides},
    }


def run_trial(
    recipe: dict[str, Any],
    config: SearchConfig,
    endpoint: Endpoint,
    *,
    launcher: Any,
    say: Callable[[str], None] = _say,
) -> TrialResult:
    """One recipe: dataset (built or reused), adapter (trained, or the one a previous attempt finished),
    published, evaluated on the tuning seeds. Idempotent: run it again after a kill and it picks up where it was.
    ``launcher`` runs the training (``actors.training.RayTrainLauncher`` in a search)."""
    from automem.distill import DatasetConfig, build_dataset
    from automem.training import load_distill_config, train_adapter

    key = recipe_key(recipe)
    name = f"{config.name}-{key}"
    trial_dir = config.folder / TRIALS_DIR / key
    data = build_dataset(
        DatasetConfig(
            source=config.source,
            run_id=config.run_id,
            strategy=recipe["strategy"],
            holdout_seeds=config.excluded_seeds(),
        ),
        config.out,
    )
    say(
        f"trial {key} {recipe}: dataset {data.dataset_id} ({data.manifest['rows']} rows"
        f"{', reused' if data.existed else ''})"
    )
    overrides = trial_overrides(config, recipe)
    adapter_dir = trial_dir / "adapter"
    training_file = adapter_dir / "training.json"
    if not training_file.is_file():
        train_config = load_distill_config(dataset=data.path, preset=recipe["preset"], overrides=overrides)
        train_adapter(train_config, trial_dir, launcher, progress=say)
    lineage = trial_lineage(config, recipe, adapter_dir)
    metrics = lineage.get("metrics") or {}
    if endpoint.publish:
        publish(adapter_dir, name, say)
    evaluation = evaluate(config, endpoint, name, lineage, config.tuning_seeds, say)
    return TrialResult(
        recipe=recipe,
        key=key,
        adapter=evaluation.adapter,
        adapter_dir=str(adapter_dir),
        dataset_id=data.dataset_id,
        dataset_rows=int(data.manifest["rows"]),
        train_loss_first=metrics.get("first_loss"),
        train_loss_last=metrics.get("last_loss"),
        train_seconds=metrics.get("train_runtime_s"),
        score=evaluation.value(config.metric),
        evaluation=asdict(evaluation),
    )


def _check_turns(config: SearchConfig) -> None:
    """Fail before any training when the tuning (or held-out) seeds have no memory turns to evaluate."""
    from automem.distill.turn_eval import EvalError, select_turns
    from automem.trajectory import read_errors

    for what, seeds in (("tuning", config.tuning_seeds), ("held-out", config.heldout_seeds)):
        if not seeds:
            continue
        errors: tuple[type[BaseException], ...] = (EvalError, *read_errors())
        try:
            select_turns(config.source, run_id=config.eval_run, seeds=seeds, limit=1)
        except errors as exc:
            raise SearchError(f"{what} seeds {seeds}: {' '.join(str(exc).split())}") from None


def _heldout(
    config: SearchConfig, endpoint: Endpoint, best: dict[str, Any], say: Callable[[str], None]
) -> dict[str, Any]:
    """The best trial evaluated once on the held-out seeds (kept in ``heldout.json``: a resumed search that
    chose the same best trial does not ask again)."""
    done = config.folder / HELDOUT_FILE
    if done.is_file():
        before = json.loads(done.read_text())
        if before.get("adapter") == best["adapter"]:
            return before
    say(f"best: {best['adapter']} ({config.metric} {best['score']:+.3f}); evaluating it on held-out seeds")
    lineage = trial_lineage(config, best["recipe"], best["adapter_dir"])
    name = best["adapter"].split(":", 1)[1]
    # Published by its trial: automem's endpoint serves what its registry holds, also after a restart.
    seeds = config.heldout_seeds or ""  # only called with held-out seeds
    evaluation = asdict(evaluate(config, endpoint, name, lineage, seeds, say))
    done.write_text(json.dumps(evaluation, indent=2, sort_keys=True, default=str) + "\n")
    return evaluation


def declared(config: SearchConfig) -> dict[str, Any]:
    """What a resumed search must repeat: everything but how many trials run at once."""
    return config.model_dump(mode="json", exclude={"parallel"})


def prepare(config: SearchConfig) -> None:
    """Before any trial: record the search as declared (or refuse one declared differently under the same name)
    and check that the tuning and held-out seeds have memory turns to evaluate.

    Raises:
        SearchError: naming what changed, or the seeds without turns.
    """
    folder = config.folder
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / SEARCH_FILE
    now = declared(config)
    if spec_file.is_file():
        before = json.loads(spec_file.read_text())
        if before != now:
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise SearchError(
                f"search {config.name!r} in {folder} was declared with other {', '.join(changed)}: "
                "run it as declared to resume, or choose another --name"
            )
    else:
        spec_file.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    _check_turns(config)


def conclude(
    config: SearchConfig,
    endpoint: Endpoint,
    trials: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """After the trials: the best by the metric (ties: the smallest key, whatever order the trials finished in),
    evaluated once on the held-out seeds; the whole result written to ``result.json`` and returned.

    Raises:
        SearchError: no trial finished.
    """
    if not trials:
        raise SearchError(
            f"no trial finished ({len(failed)} failed: {failed[:1]}); see {config.folder / TUNE_DIR}"
        )
    trials = sorted(trials, key=lambda t: t["key"])
    best = (max if config.direction == "max" else min)(trials, key=lambda t: t["score"])
    result: dict[str, Any] = {
        "name": config.name,
        "metric": config.metric,
        "direction": config.direction,
        "trials": trials,
        "failed": failed,
        "best": best,
        "heldout": _heldout(config, endpoint, best, say) if config.heldout_seeds else None,
    }
    (config.folder / RESULT_FILE).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return result


__all__ = [
    "Endpoint",
    "Evaluation",
    "SearchConfig",
    "SearchError",
    "SearchSpace",
    "TrialResult",
    "conclude",
    "prepare",
    "recipe_key",
    "run_trial",
]
