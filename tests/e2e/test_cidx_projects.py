"""A project the CIDX client set up (``cidx init --remote``): cidx-auth works there with no
setup, and never changes a byte of the client's files unless asked to migrate.

The client's files are made by ``tests.cidx_client_format`` from the documented format,
against the reference server signing HS256 as the real CIDX server does.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, logins

pytestmark = pytest.mark.slow


def client_files(cli: Cli) -> dict[str, bytes]:
    directory = cli.project / ".code-indexer"
    return {name: (directory / name).read_bytes()
            for name in (".remote-config", ".creds", ".token") if (directory / name).exists()}


def untouched(server: RunningServer) -> bool:
    """Whether nothing has reached ``server``: no login tried, no refresh, no API call."""
    stats = server.stats()
    return stats["users"] == {} and stats["requests"] == 0 and not any(
        stats["totals"].values())


def client_token(server: RunningServer) -> str:
    """A token the server issued, as the CIDX client would have stored it."""
    with httpx.Client(base_url=server.url, verify=server.ca_file or True) as http:
        answer = http.post("/auth/login", json={"username": USER, "password": PASSWORD})
    token: str = answer.json()["access_token"]
    return token


def test_a_cidx_project_works_after_one_approval_and_one_login(
    cli: Cli, hs_server: RunningServer
) -> None:
    written = write_client_project(cli.project, server_url=hs_server.url, username=USER,
                                   password=PASSWORD)
    status = cli.run("status", "--json")
    assert status.returncode == 3, status.stderr  # not approved: the next command stops
    report = json.loads(status.stdout)
    assert report["logged_in"] is False and report["approved"] is False
    assert (report["server"], report["username"]) == (hs_server.url, USER)
    assert "cidx-auth approve" in report["next_step"]
    assert not (cli.project / ".code-indexer" / "auth.json").exists()  # status wrote nothing

    refused = cli.run("token")  # not approved yet: stops before anything is sent
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "`cidx-auth approve`" in refused.stderr
    assert f"the server {hs_server.url} and user {USER}," in refused.stderr
    assert untouched(hs_server)
    unasked = cli.run("approve")  # no terminal: the explicit form is named
    assert unasked.returncode == 2 and "cidx-auth approve --yes" in unasked.stderr
    approved = cli.run("approve", "--yes")
    assert approved.returncode == 0, approved.stderr
    assert f"Approved the server {hs_server.url} and user {USER}" in approved.stdout
    assert cli.run("approve", "--yes").stdout.startswith("Already approved")
    assert json.loads(cli.run("status", "--json").stdout)["approved"] is True

    token = cli.run("token")
    assert token.returncode == 0, token.stderr
    assert cli.run("request", "GET", "/api/repos").returncode == 0
    assert logins(hs_server) == 1  # the one login that also verified the imported password
    assert client_files(cli) == written  # byte-identical

    report = json.loads(cli.run("status", "--json").stdout)
    assert report["logged_in"] is True and report["username"] == USER
    settings = json.loads((cli.project / ".code-indexer" / "auth.json").read_text())
    assert settings["allowed_algorithms"] == ["HS256"]  # pinned from the first token
    own = sorted(p.name for p in (cli.project / ".code-indexer").iterdir())
    assert ".cidx-auth.creds" in own and ".cidx-auth.token" in own


def test_a_valid_client_token_is_used_without_any_login(
    cli: Cli, hs_server: RunningServer
) -> None:
    issued = client_token(hs_server)
    before = logins(hs_server)
    written = write_client_project(cli.project, server_url=hs_server.url, username=USER,
                                   password=PASSWORD, token=issued)
    cli.approve(hs_server.url)
    result = cli.run("token")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == issued
    assert logins(hs_server) == before  # 0 logins: the client's token was enough
    assert cli.run("request", "GET", "/api/repos").returncode == 0  # the server takes it
    assert logins(hs_server) == before
    assert client_files(cli) == written
    settings = json.loads((cli.project / ".code-indexer" / "auth.json").read_text())
    assert settings["allowed_algorithms"] is None  # a token from a file pins nothing


def test_a_client_token_of_another_account_is_never_used(cli: Cli) -> None:
    """A repository names an approved server and user, and plants a `.token` that holds
    its own account's valid token (the file's record of the user is forged with it):
    the user's commands never run as that account."""
    config = ServerConfig(users={USER: PASSWORD, "mallory": "m-pass"}, alg="HS256")
    with RunningServer(config) as server:
        with httpx.Client(base_url=server.url) as http:
            theirs = http.post("/auth/login", json={"username": "mallory",
                                                    "password": "m-pass"}).json()
        write_client_project(cli.project, server_url=server.url, username=USER,
                             password=PASSWORD, token=theirs["access_token"])
        cli.approve(server.url)
        result = cli.run("token")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() != theirs["access_token"]
        assert logins(server) == 1  # the user's own login, with the stored password
        repos = cli.run("-v", "request", "GET", "/api/repos")
        assert repos.returncode == 0
        assert "not issued to alice" not in repos.stderr  # adopted once, not re-read


@pytest.mark.parametrize("command", [("token",), ("request", "GET", "/api/repos")])
def test_an_expired_client_token_costs_exactly_one_login(
    cli: Cli, hs_server: RunningServer, command: tuple[str, ...]
) -> None:
    hs_server.set_clock_offset(-3600)  # issued an hour ago: expired 50 minutes ago
    try:
        issued = client_token(hs_server)
    finally:
        hs_server.set_clock_offset(0)
    before = logins(hs_server)
    written = write_client_project(cli.project, server_url=hs_server.url, username=USER,
                                   password=PASSWORD, token=issued)
    cli.approve(hs_server.url)
    result = cli.run(*command)
    assert result.returncode == 0, result.stderr
    assert issued not in result.stdout  # the expired token is never handed out
    assert logins(hs_server) - before == 1
    stats = hs_server.stats()
    assert stats["totals"]["refreshes"] == 0  # it had none to present
    assert stats["auth_401"] == 0  # the expired token was never sent
    assert cli.run("token").returncode == 0 and logins(hs_server) - before == 1
    assert client_files(cli) == written


def test_an_explicit_login_leaves_the_client_files_alone(
    cli: Cli, hs_server: RunningServer
) -> None:
    written = write_client_project(cli.project, server_url=hs_server.url, username=USER,
                                   password=PASSWORD)
    # The server and user are the project's: named before the password is read, and
    # without a terminal to confirm them, only --yes goes on.
    refused = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")
    assert refused.returncode == 2, refused.stderr
    (error,) = refused.stderr.splitlines()  # one line, naming both
    assert error.startswith("cidx-auth: error: ") and "cidx-auth login --yes" in error
    assert f"the server {hs_server.url} and user {USER}," in error
    assert untouched(hs_server)

    result = cli.run("login", "--password-stdin", "--yes", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (  # shown before the password is read
        f"Server {hs_server.url}, user {USER} (from {cli.project}/.code-indexer/"
        ".remote-config)")
    assert cli.run("token").returncode == 0
    assert client_files(cli) == written
    assert logins(hs_server) == 1
    again = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")  # approved now
    assert again.returncode == 0, again.stderr


def test_migrate_removes_the_weak_copies_and_says_so(cli: Cli, hs_server: RunningServer) -> None:
    write_client_project(cli.project, server_url=hs_server.url, username=USER,
                         password=PASSWORD)
    result = cli.run("login", "--migrate", "--yes")
    assert result.returncode == 0, result.stderr
    assert "will be removed" in result.stdout and "ask for your password again" in result.stdout
    directory = cli.project / ".code-indexer"
    assert not (directory / ".creds").exists()
    remote = json.loads((directory / ".remote-config").read_text())
    assert "encrypted_credentials" not in remote and remote["username"] == USER
    assert cli.run("token").returncode == 0  # cidx-auth keeps its own copy
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(("problem", "code"), [
    ("damaged", 2), ("local", 2), ("no user", 2), ("other path", 3), ("plain http", 2),
])
def test_a_client_project_that_cannot_be_adopted_is_a_clear_error_and_changes_nothing(
    cli: Cli, hs_server: RunningServer, problem: str, code: int, tmp_path: Path
) -> None:
    url = "http://cidx.example.com" if problem == "plain http" else hs_server.url
    write_client_project(
        cli.project, server_url=url, username=USER, password=PASSWORD,
        mode="local" if problem == "local" else "remote",
        repo_path=tmp_path / "elsewhere" if problem == "other path" else None,
    )
    config = cli.project / ".code-indexer" / ".remote-config"
    if problem == "damaged":
        config.write_text("{not json")
    elif problem == "no user":
        document = json.loads(config.read_text())
        del document["username"]
        config.write_text(json.dumps(document))
    before = {p.name: p.read_bytes() for p in config.parent.iterdir()}
    cli.approve(url)  # approved: what stops it is the problem itself
    result = cli.run("token")
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "cidx-auth login" in result.stderr
    assert PASSWORD not in result.stderr
    assert {p.name: p.read_bytes() for p in config.parent.iterdir()} == before
    assert logins(hs_server) == 0
    # Answered: not logged in, nothing to adopt (3). A saved password encrypted for
    # another path is not decrypted by status (README): the next command says so.
    status = cli.run("status", "--json")
    assert status.returncode == (0 if problem == "other path" else 3), status.stdout
    assert json.loads(status.stdout)["logged_in"] is False
    explicit = cli.run("login", "--server", hs_server.url, "--username", USER,
                       "--password-stdin", stdin=PASSWORD + "\n")
    assert explicit.returncode == 0, explicit.stderr  # never in the way of a plain login


def test_a_refused_imported_password_costs_one_failed_login_then_none(
    cli: Cli, hs_server: RunningServer
) -> None:
    written = write_client_project(cli.project, server_url=hs_server.url, username=USER,
                                   password="an-old-password")
    cli.approve(hs_server.url)
    first = cli.run("token")
    assert first.returncode == 3 and "forgotten" in first.stderr, first.stderr
    for _ in range(3):
        later = cli.run("token")
        assert later.returncode == 3 and "cidx-auth login" in later.stderr
    assert hs_server.stats()["users"][USER]["failed_logins"] == 1  # never a second
    assert logins(hs_server) == 0
    assert client_files(cli) == written


def test_adoption_keeps_what_cidx_auth_already_holds(cli: Cli, hs_server: RunningServer) -> None:
    write_client_project(cli.project, server_url=hs_server.url, username=USER,
                         password=PASSWORD)
    cli.approve(hs_server.url)
    assert cli.run("token").returncode == 0
    settings = cli.project / ".code-indexer" / "auth.json"
    settings.unlink()  # lost; cidx-auth's own token and password are still there
    before = logins(hs_server)
    assert cli.run("token").returncode == 0
    assert logins(hs_server) == before  # its own fresh token was kept, not replaced
