"""Recipe search on Ray Tune (issue 15, item 4): each recipe of a declared space is one Tune trial that runs
:func:`automem.distill.search.run_trial` (dataset, Ray Train nested in the trial, publish, turn-level eval).

Tune's experiment storage is ``<out>/searches/<name>/tune``: the same search run again restores it, keeps finished
trials and retries errored ones. The declaration, a trial and the conclusion (best trial, held-out evaluation,
``result.json``) are in :mod:`automem.distill.search`; only the Tune run is here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from actors.training import CPUS_PER_WORKER, RayTrainLauncher
from automem import env_vars
from automem.distill.search import (
    RECIPE,
    TUNE_DIR,
    Endpoint,
    SearchConfig,
    conclude,
    prepare,
    run_trial,
)


def _tune_trial(params: dict[str, Any], config: dict[str, Any], endpoint: dict[str, Any]) -> None:
    """Tune's function trainable: one trial (``params[RECIPE]``), its result reported once (``score`` and the
    whole record as JSON)."""
    result = run_trial(
        params[RECIPE], SearchConfig.model_validate(config), Endpoint(**endpoint), launcher=RayTrainLauncher()
    )
    tune.report({"score": result.score, "trial": json.dumps(asdict(result))})


def default_parallel(cpus_per_trial: float) -> int:
    """Trials the connected cluster holds at once: its CPUs over a trial's, on one node capped by the machine's
    real cores (a local cluster advertises more logical CPUs than it has, so Serve's replicas fit)."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    if len([n for n in ray.nodes() if n.get("Alive")]) <= 1:
        cpus = min(cpus, float(os.cpu_count() or 1))
    return max(1, int(cpus // max(cpus_per_trial, 1e-9)))


def trial_cpus(config: SearchConfig) -> float:
    """The most CPUs one trial's Ray Train run asks for (over the presets of the space)."""
    return max(float(c.num_workers * CPUS_PER_WORKER) for c in config.training_configs())


def run_search(config: SearchConfig, endpoint: Endpoint, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run (or resume) the search on the connected Ray cluster; returns the result written to ``result.json``.

    Raises:
        SearchError: a search of this name was declared differently, seeds without turns, or no trial finished.
    """
    # Tune's default loggers include TensorBoard's, which warns when tensorboardX is absent: only JSON, explicitly.
    env_vars.export_default(env_vars.TUNE_DISABLE_AUTO_CALLBACK_LOGGERS)
    prepare(config)
    recipes = config.space.grid()
    parallel = config.parallel or default_parallel(trial_cpus(config))
    if endpoint.publish:
        parallel = 1  # each publish to the embedded endpoint starts an engine; one trial at a time
    say(
        f"search {config.name}: {len(recipes)} recipes, {parallel} at a time, ranked by {config.metric} "
        f"({config.direction})"
    )
    trainable = tune.with_parameters(
        tune.with_resources(
            _tune_trial, {"cpu": 0.01}
        ),  # the trial only waits; its Train workers get the CPUs
        config=config.model_dump(mode="json"),
        endpoint=asdict(endpoint),
    )
    tune_path = config.folder / TUNE_DIR
    if tune.Tuner.can_restore(str(tune_path)):
        say(f"resuming the search from {tune_path}")
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={RECIPE: tune.grid_search(recipes)},
            tune_config=tune.TuneConfig(max_concurrent_trials=parallel),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=str(config.folder),
                verbose=1,  # trial status lines
                callbacks=[JsonLoggerCallback()],  # each trial's result.json
            ),
        )
    with contextlib.redirect_stdout(sys.stderr):  # Tune's tables are progress, not the command's output
        grid = tuner.fit()
    trials, failed = [], []
    for r in (grid[i] for i in range(len(grid))):
        if r.error is not None or not r.metrics or "trial" not in r.metrics:
            failed.append({"recipe": (r.config or {}).get(RECIPE), "error": str(r.error).splitlines()[-1:]})
        else:
            trials.append(json.loads(r.metrics["trial"]))
    return conclude(config, endpoint, trials, failed, say)
