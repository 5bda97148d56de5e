"""The recipe search's declared space and config (the Tune run itself: tests/integration/test_distill_search.py)."""

from __future__ import annotations

import pytest

from automem.config import ConfigError, parse_model
from automem.distill.search import SearchConfig, SearchSpace, recipe_key, trial_lineage


def _config(**fields):
    base = {"name": "s1", "source": "/tmp/store", "out": "/tmp/out", "tuning_seeds": "900-907"}
    return parse_model(SearchConfig, {**base, **fields}, source="test", what="search")


def test_the_grid_is_every_combination_in_a_fixed_order():
    space = SearchSpace(strategy=["clean", "wellformed"], learning_rate=[1e-3, 5e-4], max_steps=[10])
    grid = space.grid()
    assert len(grid) == 4
    assert grid[0] == {"strategy": "clean", "preset": "cpu-small", "max_steps": 10, "learning_rate": 1e-3}
    assert [g["strategy"] for g in grid] == ["clean", "clean", "wellformed", "wellformed"]
    assert "epochs" not in grid[0]  # not declared: the preset's
    assert SearchSpace().grid() == [{"strategy": "clean", "preset": "cpu-small"}]


def test_a_recipe_key_depends_on_the_recipe_only():
    a = {"strategy": "clean", "preset": "cpu-small", "learning_rate": 1e-3}
    assert recipe_key(a) == recipe_key(dict(reversed(list(a.items()))))
    assert recipe_key(a) != recipe_key({**a, "learning_rate": 5e-4})
    assert len(recipe_key(a)) == 8


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"space": {"strategy": ["clean", "nope"]}}, "unknown strategy 'nope'"),
        ({"space": {"preset": ["huge"]}}, "unknown preset 'huge'"),
        ({"space": {"strategy": []}}, "space.strategy"),
        ({"heldout_seeds": "905-910"}, "overlap (e.g. 905)"),
        ({"metric": "free.loss"}, "use <mode>.<metric>"),
        ({"metric": "free.n_ops", "eval_modes": ["constrained"]}, "needs mode 'free'"),
        ({"name": "Bad Name"}, "name"),
        ({"tuning_seeds": "a-b"}, "bad seed list"),
    ],
)
def test_a_bad_search_is_refused_with_the_reason(fields, message):
    with pytest.raises(ConfigError, match=None) as info:
        _config(**fields)
    assert message in str(info.value)


def test_the_metric_decides_the_direction_and_what_is_held_out():
    assert _config().direction == "max"
    assert _config(metric="constrained.redundant_writes").direction == "min"
    assert _config(heldout_seeds="1000-1015").excluded_seeds() == "900-907,1000-1015"
    assert _config().excluded_seeds() == "900-907"


def test_every_preset_is_checked_with_the_overrides():
    assert [c.max_steps for c in _config(overrides=["max_steps=3"]).training_configs()] == [3]
    with pytest.raises(ConfigError, match="bogus"):
        _config(overrides=["bogus=1"]).training_configs()


def test_a_trial_lineage_records_the_strategy_and_every_override(tmp_path):
    (tmp_path / "training.json").write_text('{"dataset_id": "d1", "preset": "cpu-small"}')
    config = _config(overrides=["max_length=512"])
    lineage = trial_lineage(
        config, {"strategy": "clean", "preset": "cpu-small", "learning_rate": 0.002}, tmp_path
    )
    assert lineage["dataset_id"] == "d1" and lineage["strategy"] == "clean"
    assert lineage["overrides"] == {"max_length": "512", "learning_rate": "0.002"}
