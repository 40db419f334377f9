"""Messages that say what to do, and usernames as the server reads them (issue 11, items
4 and 5): the CLI in real processes against the reference server on loopback."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from adapters.project_layout import ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from refserver.config import LOCKOUT_SECONDS, LOCKOUT_THRESHOLD
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, logins
from tests.e2e.test_breaker_recovery import open_circuit, plant, repos
from tests.integration.hostile_server import HostileServer, grant

pytestmark = pytest.mark.slow

WAIT = re.compile(r"\(it says: try again in (\d+) seconds\)")


def lock_out(server: RunningServer, username: str = USER) -> None:
    """Fail as many logins as the server's lockout counts, as someone mistyping would."""
    with server.client() as client:
        for _ in range(LOCKOUT_THRESHOLD):
            answer = client.post("/auth/login", json={"username": username,
                                                      "password": "not-" + PASSWORD})
            assert answer.status_code == 401
    assert server.stats()["users"][username]["failed_logins"] == LOCKOUT_THRESHOLD


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line of a command that exited ``code``, with no traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def server_wait(message: str) -> int:
    found = WAIT.search(message)
    assert found, message
    seconds = int(found.group(1))
    assert 0 < seconds <= LOCKOUT_SECONDS
    return seconds


def test_a_locked_login_says_how_long_and_not_to_check_the_password(
    cli: Cli, server: RunningServer
) -> None:
    lock_out(server)
    message = one_line(cli.login(server.url), 3)
    server_wait(message)
    assert "locked this account after too many failed logins until" in message
    assert message.rstrip().endswith(  # nothing stored yet: the full command
        f"then run `cidx-auth login --server {server.url} --username {USER}` again")
    assert "password" not in message  # the server never looked at it
    assert server.stats()["totals"]["locked_logins"] == 1  # a lockout is not retried
    assert not cli.token_file.exists()


def test_a_lockout_with_a_good_stored_password_keeps_it_and_the_next_command_logs_in(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    lock_out(server)  # someone else, or another tool, mistyped the password meanwhile
    cli.token_file.unlink()  # the next command must log in with the stored password
    message = one_line(repos(cli), 3)
    server_wait(message)
    assert "the stored password is kept, and the first command after that logs in by " \
           "itself" in message
    assert "check" not in message and "cidx-auth login" not in message
    assert ProjectLayout(cli.project).creds.exists()
    assert server.stats()["totals"]["locked_logins"] == 1

    server.reset()  # the lockout ends (the admin API forgets it; nobody waits 15 minutes)
    done = repos(cli)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert logins(server) == 1  # counted since the reset: the command logged in by itself


def test_a_breaker_that_half_opens_and_recovers_warns_nobody(
    cli: Cli, server: RunningServer
) -> None:
    open_circuit(cli, server)
    plant(cli, open_until=time.time() - 0.5)  # the open period has just passed
    done = repos(cli)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    plant(cli, circuit="open", failures=5, open_until=time.time() - 0.5)
    told = cli.run("-v", "request", "GET", "/api/repos")
    assert told.returncode == 0, told.stderr
    assert "INFO: breaker: open -> half_open" in told.stderr
    assert "WARNING" not in told.stderr


def test_a_username_with_stray_spaces_is_stored_and_sent_trimmed(
    cli: Cli, server: RunningServer
) -> None:
    done = cli.run("login", "--server", server.url, "--username", f"  {USER}\t ",
                   "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Logged in as {USER} at {server.url} ")
    secret = secret_source(cli.config_dir, cli.env)
    settings = load_settings(ProjectLayout(cli.project), secret)
    assert settings is not None and settings.username == USER
    assert list(server.stats()["users"]) == [USER] and logins(server) == 1

    cli.token_file.unlink()  # the stored credentials log in: with the trimmed name too
    again = cli.run("token")
    assert again.returncode == 0, again.stderr
    assert list(server.stats()["users"]) == [USER] and logins(server) == 2


@pytest.mark.parametrize("typed", ["", "   ", "\t"])
def test_an_empty_username_is_a_usage_error_before_any_request(cli: Cli, typed: str) -> None:
    with HostileServer({"/auth/login": grant}) as server:
        done = cli.run("login", "--server", server.url, "--username", typed,
                       "--password-stdin", stdin=PASSWORD + "\n")
        message = one_line(done, 2)
        assert "username is empty" in message
        assert server.paths() == []
    assert not (cli.project / ".code-indexer").exists()


@pytest.mark.parametrize(("typed", "words"), [
    ("al\udcffice", "username is not valid UTF-8"),  # the byte 0xff on the command line
])
def test_a_username_that_is_not_utf8_is_a_usage_error_before_any_request(
    cli: Cli, typed: str, words: str
) -> None:
    with HostileServer({"/auth/login": grant}) as server:
        done = cli.run("login", "--server", server.url, "--username", typed,
                       "--password-stdin", stdin=PASSWORD + "\n")
        assert words in one_line(done, 2)
        assert server.paths() == []


def test_a_cidx_client_username_with_stray_spaces_is_stored_trimmed(
    cli: Cli, hs_server: RunningServer
) -> None:
    write_client_project(cli.project, server_url=hs_server.url, username=f" {USER} ",
                         password=PASSWORD)
    cli.approve(hs_server.url, USER)  # the server reads the name trimmed, and so does this
    done = cli.run("token")  # adopts the client's login
    assert done.returncode == 0, done.stderr
    settings = load_settings(ProjectLayout(cli.project), secret_source(cli.config_dir, cli.env))
    assert settings is not None and settings.username == USER
    assert list(hs_server.stats()["users"]) == [USER]

