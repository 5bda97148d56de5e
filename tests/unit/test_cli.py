# Run: .venv/bin/python -m pytest tests/unit/test_cli.py
"""The `automem` dispatcher: a wrong flag is reported with the sub-command's own usage."""

from __future__ import annotations

import pytest

from pipelines.cli import main


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["serve", "--bogus"], "usage: automem serve"),
        (["env", "show", "crafter-v0", "--seed", "1", "--bogus"], "usage: automem env show"),
        (["rollout", "--bogus"], "usage: automem rollout"),
    ],
)
def test_an_unknown_flag_names_the_sub_command(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert usage in err and "unrecognized arguments: --bogus" in err
