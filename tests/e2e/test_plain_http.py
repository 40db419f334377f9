"""Plain http is for this machine only, unless the user opts in at login (issue 10, item 2).

The remote name ``cidx.invalid`` cannot resolve (RFC 6761), so a refusal shows as exit 2
before any connection, and an attempt, once allowed, as exit 4: never as traffic.
"""

from __future__ import annotations

import json

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli
from tests.settings_signing import edit_signed

pytestmark = pytest.mark.slow

REMOTE = "http://cidx.invalid:8000"


def test_plain_http_to_another_host_is_refused_before_any_connection(cli: Cli) -> None:
    result = cli.login(REMOTE)
    assert result.returncode == 2, result.stderr
    assert "https://" in result.stderr and "--allow-plain-http" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cli.project / ".code-indexer" / "auth.json").exists()


def test_the_opt_in_is_warned_about_and_recorded(cli: Cli) -> None:
    result = cli.login(REMOTE, "--allow-plain-http")
    assert result.returncode == 4, result.stderr  # allowed: it tried, and the name is unknown
    assert "clear text" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_loopback_http_needs_no_opt_in_and_status_shows_the_settings(
    cli: Cli, server: RunningServer
) -> None:
    assert server.url.startswith("http://127.0.0.1")
    result = cli.login(server.url)
    assert result.returncode == 0, result.stderr
    assert "tokens must be signed RS256" in result.stdout  # the pin, said at login
    report = json.loads(cli.run("status", "--json").stdout)
    assert report["plain_http"] is False and report["algorithms"] == ["RS256"]
    assert report["username"] == USER


def test_a_recorded_opt_in_lets_later_commands_through(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    # as if logged in there with the opt-in (signed: settings change only through login)
    edit_signed(cli.project, cli.config_dir, server_url=REMOTE)
    refused = cli.run("request", "GET", "/api/repos")
    assert refused.returncode == 2 and "--allow-plain-http" in refused.stderr
    edit_signed(cli.project, cli.config_dir, plain_http=True)
    status = json.loads(cli.run("status", "--json").stdout)
    assert status["plain_http"] is True
