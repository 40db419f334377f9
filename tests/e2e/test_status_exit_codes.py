"""`status` is a check scripts can use (issue 22, item 5; decisions.md "`status` exit
codes"): 0 when the next command reaches the server without asking anything, 3 when not
logged in or nothing is left to renew with, 4 while the breaker is open, 5 when local
storage cannot be read; `--json` prints its object in every case. Both the cold path and
the full CLI (`-v` takes the full one) give the same code."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.fernet_cipher import project_cipher
from adapters.file_io import read_private, write_private
from adapters.project_layout import ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session, encode_session
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, expire_stored_token
from tests.e2e.test_breaker_recovery import plant

pytestmark = pytest.mark.slow

OTHER_UID = 2002


def checked(cli: Cli, code: int) -> dict[str, Any]:
    """`status --json` on the cold path and on the full one (`-v`), and the plain
    `status`: all exit ``code``; the report, printed whatever the code."""
    reports = []
    for extra in ((), ("-v",)):
        done = cli.run(*extra, "status", "--json")
        assert done.returncode == code, (extra, done.returncode, done.stdout, done.stderr)
        reports.append(json.loads(done.stdout))
    plain = cli.run("status")
    assert plain.returncode == code and "logged in:" in plain.stdout, plain.stderr
    for report in reports:
        report.pop("checked_at", None)
        report.pop("next_attempt", None)
        report.pop("seconds_left", None)
    assert reports[0] == reports[1]
    return reports[0]


def rewrite_session(cli: Cli, **changes: Any) -> None:
    """Replace fields of the stored session, through the project's own codec."""
    layout = ProjectLayout(cli.project)
    secret = secret_source(cli.config_dir, cli.env)
    settings = load_settings(layout, secret)
    assert settings is not None
    cipher = project_cipher(cli.project, settings.server_url, secret)
    found = read_private(layout.token)
    assert found is not None
    session = replace(decode_session(found[0], cipher), **changes)
    now = time.time()
    write_private(layout.token, encode_session(session, cipher, now), sweep_young=False,
                  now=now)


def test_not_logged_in_is_3_and_a_login_makes_it_0(cli: Cli, server: RunningServer) -> None:
    report = checked(cli, 3)
    assert report["logged_in"] is False and "cidx-auth login" in report["next_step"]
    assert cli.login(server.url).returncode == 0
    assert checked(cli, 0)["token_state"] == "fresh"


def test_a_way_to_renew_is_0_and_nothing_to_renew_with_is_3(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    expire_stored_token(cli)
    report = checked(cli, 0)  # the refresh token (and the password) renew it
    assert report["token_state"] == "expired" and report["refresh_token_held"] is True
    rewrite_session(cli, refresh_token=None)
    assert checked(cli, 0)["credentials_stored"] is True  # the stored password will do
    ProjectLayout(cli.project).creds.unlink()
    report = checked(cli, 3)  # an expired token and nothing to renew it with
    assert report["logged_in"] is True and "cidx-auth login" in report["next_step"]
    assert cli.run("logout").returncode == 0
    assert checked(cli, 3)["logged_in"] is False


def test_an_open_breaker_is_4_and_one_due_for_a_probe_is_0(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    assert cli.run("request", "GET", "/api/repos").returncode == 0  # .state exists
    plant(cli, circuit="open", failures=5, open_until=time.time() + 600, open_period=30.0)
    assert checked(cli, 4)["breaker"] == "open"
    plant(cli, circuit="open", failures=5, open_until=time.time() - 1, open_period=30.0)
    assert checked(cli, 0)["breaker"] == "open"  # the next command is the probe
    cli.run("logout")
    plant(cli, circuit="open", failures=5, open_until=time.time() + 600, open_period=30.0)
    assert checked(cli, 3)["logged_in"] is False  # login comes first (and resets it)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_storage_that_cannot_be_read_is_5_and_the_object_is_printed(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    token = ProjectLayout(cli.project).token
    os.chown(token, OTHER_UID, -1)  # another user's file: never read
    report = checked(cli, 5)
    assert report["unreadable"] == [str(token)]
    os.chown(token, os.getuid(), -1)
    assert checked(cli, 0)["unreadable"] == []


def test_status_json_prints_an_object_when_status_itself_is_stopped(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    settings = cli.project / ".code-indexer" / "auth.json"
    document = json.loads(settings.read_text())
    document["server_url"] = "https://elsewhere.example"  # a hand edit: the MAC fails
    settings.write_text(json.dumps(document))
    done = cli.run("status", "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["logged_in"] is False and "changed outside cidx-auth" in report["error"]
    assert done.stderr.startswith("cidx-auth: error: ") and done.stderr.count("\n") == 1


@pytest.mark.parametrize(("approved", "code"), [(True, 0), (False, 3)])
def test_a_cidx_clients_project_is_ready_only_when_approved_with_a_saved_password(
    cli: Cli, server: RunningServer, approved: bool, code: int, tmp_path: Path
) -> None:
    write_client_project(cli.project, server_url=server.url, username=USER,
                         password=PASSWORD)
    if approved:
        cli.approve(server.url)
    report = checked(cli, code)
    assert report["logged_in"] is False and report["approved"] is approved
    assert report["credentials_stored"] is True
    if approved:
        (cli.project / ".code-indexer" / ".creds").unlink()
        embedded = json.loads((cli.project / ".code-indexer" / ".remote-config").read_text())
        embedded.pop("encrypted_credentials", None)
        (cli.project / ".code-indexer" / ".remote-config").write_text(json.dumps(embedded))
        assert checked(cli, 3)["credentials_stored"] is False  # nothing to adopt
