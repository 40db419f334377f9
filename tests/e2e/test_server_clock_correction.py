"""A server clock set right after running 10 minutes slow (found by ``make soak``).

Every token issued on the slow clock dies when the clock is corrected. A long-lived
client holding one gets a 401, adopts the token another process stored meanwhile (dead
as well: issued on the same slow clock) and sends it as its one retry: the call fails
with ``ApiUnauthorized`` although a login or a refresh would have worked. The next call
renews from the server. architecture.md lists it under "Known limits"; this test fails
the day it is fixed (``ApiUnauthorized``, an ``AuthenticationError``, no longer raised),
so the note can go.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cidx_auth import AuthenticationError, open_project
from tests.e2e.conftest import Cli, server_with

pytestmark = pytest.mark.slow


@pytest.mark.xfail(raises=AuthenticationError, strict=True,
                   reason="a stored token issued on the slow clock is adopted after the 401")
def test_a_call_after_the_server_clock_is_set_right_succeeds(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server_with(lifetime=300) as server:
        assert cli.login(server.url).returncode == 0
        server.set_clock_offset(-600)  # the server's clock runs 10 minutes slow
        assert cli.run("token", "--refresh").returncode == 0  # B1, on the slow clock
        monkeypatch.setenv("CIDX_CONFIG_DIR", cli.env["CIDX_CONFIG_DIR"])
        with open_project(Path(cli.project)) as project, project.client() as client:
            client.repos()  # this process holds B1
            assert cli.run("token", "--refresh").returncode == 0  # another stores B2
            server.set_clock_offset(0)  # set right: B1 and B2 have both expired
            try:
                client.repos()
            finally:
                assert client.repos()["total"] >= 1  # the call after it renews
        assert server.stats()["totals"]["replays"] == 0
