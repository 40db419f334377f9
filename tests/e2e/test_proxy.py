"""Proxies never carry clear text (issue 20, item 2): the CLI as a user runs it.

The remote names end in ``.invalid`` (RFC 6761): a refusal shows as exit 2 before any
connection; an attempt would show as exit 4. The only proxy that listens is the
recording one on 127.0.0.1, and it forwards nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, Cli
from tests.integration.recording_proxy import (
    PROXY_PASSWORD,
    PROXY_USER,
    VARIABLES,
    RecordingProxy,
    recording_proxy,
)
from tests.settings_signing import edit_signed

pytestmark = pytest.mark.slow

REMOTE = "http://cidx.invalid:8000"
REMOTE_PROXY = f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.invalid:3128"
SHOWN = "http://proxy.invalid:3128"


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with recording_proxy() as running:
        yield running


def proxied(cli: Cli, url: str) -> Cli:
    """``cli`` with every proxy variable naming ``url`` and no NO_PROXY."""
    env = {k: v for k, v in cli.env.items() if k.lower() not in ("no_proxy", *VARIABLES)}
    return Cli(cli.project, {**env, **dict.fromkeys(VARIABLES, url)})


def test_commands_to_a_loopback_server_send_the_proxy_nothing(
    cli: Cli, server: RunningServer, proxy: RecordingProxy,
) -> None:
    cli = proxied(cli, proxy.url)
    login = cli.login(server.url)
    assert login.returncode == 0, login.stderr
    request = cli.run("request", "GET", "/api/repos")
    assert request.returncode == 0, request.stderr
    status = cli.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["proxy"] is None
    assert (len(proxy.received), proxy.connections) == (0, 0)


def test_plain_http_through_a_remote_proxy_is_refused_before_any_connection(cli: Cli) -> None:
    cli = proxied(cli, REMOTE_PROXY)
    result = cli.login(REMOTE)
    assert result.returncode == 2, result.stderr
    assert f"through the proxy {SHOWN} (from " in result.stderr
    assert "--allow-plain-http" in result.stderr and "Traceback" not in result.stderr
    assert PROXY_PASSWORD not in result.stderr and PROXY_USER not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (cli.project / ".code-indexer" / "auth.json").exists()


def test_a_recorded_plain_http_server_and_a_remote_proxy_stop_every_command(
    cli: Cli, server: RunningServer,
) -> None:
    assert cli.login(server.url).returncode == 0
    edit_signed(cli.project, cli.config_dir, server_url=REMOTE)  # as if edited elsewhere
    cli = proxied(cli, REMOTE_PROXY)
    refused = cli.run("request", "GET", "/api/repos")
    assert refused.returncode == 2 and SHOWN in refused.stderr, refused.stderr
    assert PROXY_PASSWORD not in refused.stderr + refused.stdout
    status = cli.run("status", "--json")
    report = json.loads(status.stdout)
    assert report["proxy"] is None and PROXY_PASSWORD not in status.stdout
    assert any("proxy" in finding and SHOWN in finding for finding in report["findings"])


def test_status_shows_the_proxy_in_use_without_its_password(
    cli: Cli, server: RunningServer,
) -> None:
    assert cli.login(server.url).returncode == 0
    edit_signed(cli.project, cli.config_dir, server_url="https://cidx.invalid")
    status = proxied(cli, REMOTE_PROXY).run("status", "--json")
    report = json.loads(status.stdout)
    assert report["proxy"] == SHOWN and not _about_a_proxy(report)
    assert PROXY_PASSWORD not in status.stdout and PROXY_USER not in status.stdout
    people = proxied(cli, REMOTE_PROXY).run("status")
    assert f"proxy: {SHOWN}" in people.stdout and PROXY_PASSWORD not in people.stdout
    # the opt-in lets a plain-http server's traffic through the proxy: shown, not refused
    edit_signed(cli.project, cli.config_dir, server_url=REMOTE, plain_http=True)
    report = json.loads(proxied(cli, REMOTE_PROXY).run("status", "--json").stdout)
    assert report["proxy"] == SHOWN and not _about_a_proxy(report)
    assert PASSWORD not in json.dumps(report)


def _about_a_proxy(report: dict[str, Any]) -> list[str]:
    """The findings about a proxy (the token planted for the first server is another)."""
    return [finding for finding in report["findings"] if "proxy" in finding]
