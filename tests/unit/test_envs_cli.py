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


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["show", "nethack-v0", "--seed", "-5"], "argument --seed: seed must be in [0, 2**64), got -5"),
        (["show", "minihack-mazewalk-9x9-v0", "--seed", str(2**64)], "argument --seed: seed must be in"),
        (["show", "corridor-v0", "--seed", "x"], "argument --seed: 'x' is not an integer"),
        (
            ["show", "corridor-v0", "--seed", "1", "--max-steps", "0"],
            "argument --max-steps: must be at least 1",
        ),
        (
            ["show", "corridor-v0", "--seed", "1", "--steps", "-3"],
            "argument --steps: must be at least 0, got -3",
        ),
        (["play", "corridor-v0", "--seed", "-1"], "argument --seed: seed must be in"),
        (["play", "corridor-v0", "--max-steps", "-2"], "argument --max-steps: must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv: list[str], complaint: str, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["env", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err and "Traceback" not in err


def test_settings_an_env_refuses_exit_2_without_a_traceback(monkeypatch, capsys):
    def refuse(env_id, **kwargs):
        raise ValueError("max_steps must be at least 1")

    monkeypatch.setattr("automem.envs.make_env", refuse)
    assert main(["env", "show", "corridor-v0", "--seed", "1"]) == 2
    assert capsys.readouterr().err == "automem env: max_steps must be at least 1\n"


def test_the_test_fake_is_marked_in_the_listing(capsys):
    assert main(["env", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["corridor-v0"].split(None, 1)[1].startswith("[test] ")
    assert not any("[test]" in line for env_id, line in lines.items() if env_id != "corridor-v0")
    assert main(["env", "list", "--json"]) == 0
    listed = {e["id"]: e["test"] for e in json.loads(capsys.readouterr().out)}
    assert listed["corridor-v0"] is True and sum(listed.values()) == 1


def test_play_reports_a_unicode_digit_as_an_invalid_action(monkeypatch, capsys):
    answers = iter(["²", "١", "1", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["env", "play", "corridor-v0", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "! invalid action '²'" in out and "! invalid action '١'" in out
    assert "[step 1, progression 0.250]" in out  # "1" (right) was taken, the other two were not
