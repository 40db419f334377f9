"""Messages that say what to run name a command that works (issue 22, item 3): a bare
`cidx-auth login` reuses the project's signed settings and asks only for the password;
where nothing is stored, a message names the full command. Real processes, loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, logins

pytestmark = pytest.mark.slow


@pytest.fixture
def tls_server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={USER: PASSWORD}), tls=True) as running:
        yield running


def settings(cli: Cli) -> dict[str, object]:
    document = json.loads((cli.project / ".code-indexer" / "auth.json").read_text())
    document.pop("mac")
    return dict(document)


def bare_login(cli: Cli, password: str = PASSWORD) -> tuple[int, str, str]:
    done = cli.run("login", "--password-stdin", stdin=password + "\n")
    return done.returncode, done.stdout, done.stderr


def test_a_bare_login_reuses_the_stored_server_user_and_settings(
    cli: Cli, tls_server: RunningServer
) -> None:
    assert tls_server.ca_file is not None
    first = cli.login(tls_server.url, "--ca-bundle", str(tls_server.ca_file))
    assert first.returncode == 0, first.stderr
    before = settings(cli)
    assert before["ca_bundle_sha256"] and before["allowed_algorithms"] == ["RS256"]
    assert cli.run("logout").returncode == 0

    code, out, err = bare_login(cli)
    assert code == 0, err
    auth_json = cli.project / ".code-indexer" / "auth.json"
    assert err == f"Server {tls_server.url}, user {USER} (server and user from {auth_json})\n"
    assert f"Logged in as {USER} at {tls_server.url}" in out
    assert settings(cli) == before  # the CA bundle and its pin kept; pinned again: RS256
    assert logins(tls_server) == 2
    token = cli.run("request", "GET", "/api/repos")  # through the kept CA bundle
    assert token.returncode == 0, token.stderr


def test_with_nothing_stored_a_bare_login_names_the_full_command(cli: Cli) -> None:
    done = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("cidx-auth: error: ") and done.stderr.count("\n") == 1
    assert "`cidx-auth login --server URL --username NAME`" in done.stderr
    assert not (cli.project / ".code-indexer").exists()


def test_a_refused_password_names_a_login_command_that_works(
    cli: Cli, server: RunningServer
) -> None:
    # A first login: nothing is stored, so the message names the whole command.
    first = cli.login(server.url)
    wrong = cli.run("login", "--server", server.url, "--username", USER, "--password-stdin",
                    stdin="not-the-password\n")
    assert first.returncode == 0
    assert wrong.returncode == 3 and wrong.stderr.count("\n") == 1, wrong.stderr
    # auth.json names the same server and user: the bare command works, and is named.
    assert "then run `cidx-auth login` again" in wrong.stderr
    assert bare_login(cli)[0] == 0

    other = Cli(cli.project.parent / "fresh", cli.env)
    other.project.mkdir()
    refused = other.run("login", "--server", server.url, "--username", USER,
                        "--password-stdin", stdin="not-the-password\n")
    assert refused.returncode == 3
    full = f"then run `cidx-auth login --server {server.url} --username {USER}` again"
    assert full in refused.stderr, refused.stderr
    assert other.run("login", "--server", server.url, "--username", USER,
                     "--password-stdin", stdin=PASSWORD + "\n").returncode == 0


def test_after_logout_the_command_token_names_works(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    assert cli.run("logout").returncode == 0
    refused = cli.run("token")
    assert refused.returncode == 3 and "run `cidx-auth login`" in refused.stderr
    assert bare_login(cli)[0] == 0
    assert cli.run("token").returncode == 0


def test_auth_json_wins_over_the_cidx_clients_remote_config_without_a_question(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    # The CIDX client's project names a server nobody approved; the user logged in to
    # another one here with cidx-auth (its signed auth.json).
    write_client_project(cli.project, server_url="https://cidx.elsewhere.example",
                         username="mallory", password="their-password")
    assert cli.login(server.url).returncode == 0
    assert cli.run("logout").returncode == 0
    code, _, err = bare_login(cli)  # no terminal, no --yes: no question was needed
    assert code == 0, err
    assert f"Server {server.url}, user {USER} (server and user from " in err
    assert "auth.json" in err
    assert "elsewhere" not in err


def test_a_bare_login_in_a_cidx_clients_project_still_asks_to_approve(
    cli: Cli, server: RunningServer
) -> None:
    """Without auth.json, the server and user come from .remote-config, as before: not
    approved and no terminal, the login stops before the password is read."""
    write_client_project(cli.project, server_url=server.url, username=USER,
                         password=PASSWORD)
    done = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 2 and "cidx-auth login --yes" in done.stderr
    assert logins(server) == 0


def test_a_bare_login_refused_by_a_local_check_says_one_line_and_credits_what_was_given(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    cli.config_dir.chmod(0o777)  # a per-user secret another user could have chosen
    try:
        refused = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")
    finally:
        cli.config_dir.chmod(0o700)
    assert refused.returncode == 5
    (line,) = refused.stderr.splitlines()  # the refusal alone: nothing said before it
    assert line.startswith("cidx-auth: error: ") and "can be written by every user" in line
    done = cli.run("login", "--username", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert f"Server {server.url}, user {USER} (server from " in done.stderr
