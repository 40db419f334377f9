"""`logout` means logged out (issue 22, item 4; decisions.md "Logout"): the token and the
stored password go, the settings stay, and no command reaches the server until the next
`login`, which asks only for the password. The CLI in real processes, on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.project_layout import ProjectLayout
from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli


def server_contacts(server: RunningServer) -> int:
    """Every login, refresh (accepted or refused) and API request the server has seen."""
    stats = server.stats()
    totals = stats["totals"]
    return int(sum(totals[name] for name in ("logins", "failed_logins", "refreshes",
                                             "failed_refreshes")) + stats["requests"])


@pytest.mark.parametrize("forget", [False, True], ids=["logout", "logout --forget"])
def test_after_logout_no_command_reaches_the_server_until_login(
    cli: Cli, server: RunningServer, forget: bool
) -> None:
    assert cli.login(server.url).returncode == 0
    layout = ProjectLayout(cli.project)
    done = cli.run("logout", *(["--forget"] if forget else []))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Logged out") and done.stderr == ""
    assert not layout.token.exists() and not layout.creds.exists()
    assert layout.settings.exists()  # the settings stay, for a bare login
    before = server_contacts(server)
    for args in (["token"], ["token", "--refresh"], ["request", "GET", "/api/repos"],
                 ["query", "anything", "--repo", "backend"]):
        refused = cli.run(*args)
        assert refused.returncode == 3, (args, refused.stderr)
        assert refused.stdout == ""
        assert refused.stderr.startswith("cidx-auth: error: ") and \
            refused.stderr.count("\n") == 1, refused.stderr
        assert "run `cidx-auth login`" in refused.stderr
    assert server_contacts(server) == before  # nothing was sent
    assert not layout.token.exists() and not layout.creds.exists()

    shown = cli.run("status")
    assert "logged in: no" in shown.stdout
    report = json.loads(cli.run("status", "--json").stdout)
    assert report["logged_in"] is False and report["token_state"] == "none"
    assert "cidx-auth login" in report["next_step"]
    assert report["server"] == server.url and report["username"] == USER  # kept
    assert cli.login(server.url).returncode == 0 and cli.run("token").returncode == 0


def test_logout_is_repeatable_and_says_so_before_any_login(cli: Cli, server: RunningServer
                                                           ) -> None:
    assert cli.run("logout").stdout.startswith("Not logged in")
    assert cli.login(server.url).returncode == 0
    assert cli.run("logout").returncode == 0
    second = cli.run("logout")
    assert second.returncode == 0 and second.stdout.startswith("Logged out")


def test_with_a_shared_store_a_logout_holds_here_while_another_host_renews(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    """Two hosts share one session in Redis. Logging out on one clears it; the other,
    still logged in, renews it into Redis. The one that logged out must stay logged out
    until its own `login` (review of issue 22), not pick up the fleet's new session."""
    from tests.integration.redis_support import RedisServer, redis_binary

    redis = RedisServer(redis_binary())
    redis.start()
    try:
        here = cli
        there = Cli(tmp_path / "other-host", cli.env)
        there.project.mkdir()
        for host in (here, there):
            done = host.login(server.url, "--store", redis.url)
            assert done.returncode == 0, done.stderr
        assert here.run("logout").returncode == 0
        assert there.run("token", "--refresh").returncode == 0  # the fleet's session again
        before = server_contacts(server)
        for command in (("token",), ("request", "GET", "/api/repos")):
            done = here.run(*command)
            assert done.returncode == 3, done.stderr
            assert "logged out here (`cidx-auth logout`): run `cidx-auth login`" in done.stderr
        assert server_contacts(server) == before  # nothing sent
        status = here.run("status", "--json")
        assert status.returncode == 3 and json.loads(status.stdout)["logged_in"] is False
        assert here.run("login", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
        assert here.run("token").returncode == 0  # its own login undid its logout
        assert there.run("status").returncode == 0  # and the other host never noticed
    finally:
        redis.stop()
