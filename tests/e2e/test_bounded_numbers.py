"""A planted counter of 4,300 digits in ``.state`` (issue 20, item 4): every command
still works, and the file is handled like any damaged ``.state``: reported, replaced by
the next command that writes, never a traceback."""

from __future__ import annotations

import json

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow

DAMAGED = "the state file is damaged; starting from the default state"


@pytest.mark.parametrize("digits", [4300, 4301])
def test_a_huge_counter_is_damage_not_a_traceback(
    cli: Cli, server: RunningServer, digits: int
) -> None:
    assert cli.login(server.url).returncode == 0
    state = cli.project / ".code-indexer" / ".state"
    document = json.loads(state.read_text())
    text = json.dumps(document).replace('"logins": 1', '"logins": ' + "9" * digits)
    state.write_text(text)

    shown = cli.run("status")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr and "9" * 50 not in shown.stdout
    assert state.read_text() == text  # status writes nothing

    token = cli.run("token")
    assert (token.returncode, token.stderr) == (0, "")

    again = cli.login(server.url)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert again.stderr.count(DAMAGED) == 1 and len(again.stderr.splitlines()) == 1
    assert json.loads(state.read_text())["counters"] == {"logins": 1}  # replaced
