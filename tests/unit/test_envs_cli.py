# Run: .venv/bin/python -m pytest tests/unit/test_envs_cli.py
"""`automem env list|show|play` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from automem.envs import list_envs
from pipelines.cli import main

ENV_IDS = [s.id for s in list_envs()]


def test_list_prints_one_id_per_line_with_a_description(capsys):
    assert main(["env", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ENV_IDS
    assert all(len(line.split(None, 1)) == 2 for line in lines)
    assert main(["env", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in listed] == ENV_IDS and all(e["description"] for e in listed)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_show_works_for_every_id_and_is_reproducible(env_id, capsys):
    assert main(["env", "show", env_id, "--seed", "3", "--steps", "5"]) == 0
    first = capsys.readouterr().out
    assert main(["env", "show", env_id, "--seed", "3", "--steps", "5"]) == 0
    assert capsys.readouterr().out == first
    assert "progression" in first.splitlines()[-1]


def test_unknown_id_exits_2_and_names_the_known_ids(capsys):
    assert main(["env", "show", "crafter-v1", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "crafter-v1" in err and "crafter-v0" in err and "nethack-v0" in err


def test_play_takes_names_and_numbers_reports_bad_input_and_quits(monkeypatch, capsys):
    answers = iter(["move north", "not an action", "2", "?", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["env", "play", "crafter-v0", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "! invalid action 'not an action'" in out
    assert "[step 2, progression" in out
    assert " 16 make iron sword:" in out  # the action list, shown for '?'


def test_play_ends_with_the_episode(monkeypatch, capsys):
    monkeypatch.setattr("builtins.input", lambda prompt="": "noop")
    assert main(["env", "play", "crafter-v0", "--seed", "1", "--max-steps", "3"]) == 0
    assert "Episode truncated after 3 steps" in capsys.readouterr().out
