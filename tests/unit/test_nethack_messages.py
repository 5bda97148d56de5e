# Run: .venv/bin/python -m pytest tests/unit/test_nethack_messages.py -q
"""Every message of a real ``--More--`` chain is kept, repeats included, in order (issue 17, item 4).

The scenario is a real game, not a made-up screen: on seed 2 of ``nethack-v0`` (a Healer whose kitten plays with
a gold piece next to her) a search of 20 turns (``digit 2``, ``digit 0``, ``search``) ends with two identical
screens: "The kitten picks up a gold piece.  The kitten drops a gold piece.--More--", then the same line
without ``--More--``. The chain is read from NLE's own screen (``tty_chars`` row 0 of every raw step, the one
the action took and the ``--More--`` answers the env typed), independently of the text, and the text's message
must hold all four messages in that order.
"""

from __future__ import annotations

import re

import pytest

from automem.envs import make_env

SEED = 2
SETUP = ["digit 2", "digit 0"]  # a count of 20 for the next command
ACTION = "search"
PICK = "The kitten picks up a gold piece."
DROP = "The kitten drops a gold piece."
_MORE = "--More--"


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@pytest.fixture()
def spied():
    """A ``nethack-v0`` env, and the top screen row of every raw NLE step it takes (``--More--`` answers too)."""
    env = make_env("nethack-v0")
    rows: list[str] = []
    original = env._env.step

    def spy(index: int):
        out = original(index)
        rows.append(bytes(out[0]["tty_chars"][0]).decode("latin-1").rstrip())
        return out

    env._env.step = spy
    yield env, rows
    env._env.step = original
    env.close()


def test_a_real_chain_of_identical_more_screens_keeps_every_message(spied):
    env, rows = spied
    env.reset(seed=SEED)
    for action in SETUP:
        env.step(action)
    rows.clear()
    obs, *_ = env.step(ACTION)

    # NLE's screens: two identical top lines in a row, the first waiting on --More--.
    assert len(rows) == 2, rows
    assert rows[0].endswith(_MORE) and rows[0].removesuffix(_MORE) == rows[1]
    chain = [s for row in rows for s in _sentences(row.removesuffix(_MORE))]
    assert chain == [PICK, DROP, PICK, DROP]

    first = obs.splitlines()[0]
    assert first.startswith("Message: ")
    assert _sentences(first.removeprefix("Message: ")) == chain
