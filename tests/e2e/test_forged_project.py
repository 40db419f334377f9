"""A cloned repository never chooses the server (issue 20, item 1).

The repository ships ``.code-indexer/.remote-config`` naming its own server, and a
``.creds`` forged for the path it is cloned to (the key is PBKDF2 of public values, so
anyone can make one). Until the user approves that server and user, no command sends
anything there, and nothing is written in the project or the config directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, logins, on_a_terminal, server_with

pytestmark = [pytest.mark.slow, pytest.mark.posix]

FORGED_PASSWORD = "what-the-repository-chose"


@pytest.fixture
def attacker() -> Iterator[RunningServer]:
    """The repository's server: it would accept the forged login."""
    config = ServerConfig(users={USER: FORGED_PASSWORD}, alg="HS256")
    with RunningServer(config) as running:
        yield running


def untouched(server: RunningServer) -> bool:
    """Whether nothing has reached ``server``: no login tried, no refresh, no API call."""
    stats = server.stats()
    return stats["users"] == {} and stats["requests"] == 0 and not any(
        stats["totals"].values())


def tree(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("command", [
    ("token",), ("query", "login handler"), ("request", "GET", "/api/repos"),
    ("login", "--password-stdin"), ("login", "--migrate"),
])
def test_a_forged_repository_reaches_its_server_with_nothing(
    cli: Cli, attacker: RunningServer, command: tuple[str, ...]
) -> None:
    write_client_project(cli.project, server_url=attacker.url, username=USER,
                         password=FORGED_PASSWORD)
    before = tree(cli.project)

    done = cli.run(*command, stdin=PASSWORD + "\n", env_extra={"CIDX_PASSWORD": PASSWORD})

    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("cidx-auth: error: ") and "Traceback" not in done.stderr
    assert f"names the server {attacker.url} and user {USER}, which you have not approved" \
        in error
    assert "nothing was sent" in error
    assert ("`cidx-auth login --yes`" if command[0] == "login" else "`cidx-auth approve`") \
        in error
    assert untouched(attacker)
    assert tree(cli.project) == before  # no auth.json, no lock, no state
    assert not (cli.config_dir / "servers.json").exists()
    assert PASSWORD not in done.stdout + done.stderr


def test_a_server_approved_by_a_login_elsewhere_needs_no_question_here(
    cli: Cli, tmp_path: Path
) -> None:
    """`cidx init --remote` here, one `cidx-auth login` anywhere: never a prompt."""
    with server_with(alg="HS256") as server:
        elsewhere = tmp_path / "other-project"
        elsewhere.mkdir()
        first = Cli(elsewhere, cli.env).login(server.url)
        assert first.returncode == 0, first.stderr
        written = write_client_project(cli.project, server_url=server.url, username=USER,
                                       password=PASSWORD)
        done = cli.run("token")
        assert done.returncode == 0, done.stderr
        assert cli.run("request", "GET", "/api/repos").returncode == 0
        assert logins(server) == 2  # the login elsewhere, and adoption's first one
        directory = cli.project / ".code-indexer"
        assert {name: (directory / name).read_bytes() for name in written} == written


def answering(cli: Cli, *args: str, answer: str, password: str | None = None
              ) -> tuple[int, str]:
    """``cidx-auth ARGS`` at a terminal, ``answer`` typed once it asks a question."""
    return on_a_terminal(cli, *args, keys=answer.encode() + b"\n", after=b"[y/N]",
                         env_extra={"CIDX_PASSWORD": password} if password else None)


def test_at_a_terminal_login_names_the_server_and_user_and_a_no_sends_nothing(
    cli: Cli, attacker: RunningServer
) -> None:
    write_client_project(cli.project, server_url=attacker.url, username=USER,
                         password=FORGED_PASSWORD)
    code, shown = answering(cli, "login", answer="n", password=PASSWORD)
    assert code == 2, shown
    question = shown.index("Send your password there? [y/N]")
    assert shown.index(f"Server {attacker.url}, user {USER}") < question
    assert "you did not confirm the server" in shown
    assert untouched(attacker)
    assert not (cli.project / ".code-indexer" / "auth.json").exists()


def test_at_a_terminal_a_yes_logs_in_and_approves_for_next_time(cli: Cli) -> None:
    with server_with(alg="HS256") as server:
        write_client_project(cli.project, server_url=server.url, username=USER,
                             password=PASSWORD)
        code, shown = answering(cli, "login", answer="y", password=PASSWORD)
        assert code == 0, shown
        assert f"Logged in as {USER} at {server.url}" in shown
        again = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")
        assert again.returncode == 0, again.stderr  # no question: approved by the first
        assert logins(server) == 2


def test_approve_at_a_terminal_asks_first_and_a_no_approves_nothing(
    cli: Cli, attacker: RunningServer
) -> None:
    write_client_project(cli.project, server_url=attacker.url, username=USER,
                         password=FORGED_PASSWORD)
    code, shown = answering(cli, "approve", answer="n")
    assert code == 2, shown
    assert f"names the server {attacker.url} and user {USER}." in shown
    assert f"not approved: the server {attacker.url} and user {USER}" in shown
    assert cli.run("token").returncode == 2
    code, shown = answering(cli, "approve", answer="y")
    assert code == 0 and f"Approved the server {attacker.url} and user {USER}" in shown
    assert json.loads(cli.run("status", "--json").stdout)["approved"] is True
    assert untouched(attacker)  # approving sends nothing


def test_what_a_remote_config_says_reaches_the_terminal_without_its_controls(
    cli: Cli, attacker: RunningServer
) -> None:
    """OSC 52 (a clipboard write), a window title, a screen clear and invisible marks in
    the username of ``.remote-config``: shown as text, never acted on."""
    hostile = "ali\x1b]52;c;ZXZpbA==\x07ce\x1b]0;pwned\x07\x1b[2J\u2028\u200e\u061c"
    write_client_project(cli.project, server_url=attacker.url, username=hostile,
                         password=FORGED_PASSWORD)
    outputs = [cli.run("approve", "--yes"), cli.run("status"), cli.run("status", "--json"),
               cli.run("login", "--password-stdin", "--yes", stdin="x\n")]
    for done in outputs:
        for stream in (done.stdout, done.stderr):
            assert not any(char in stream for char in "\x1b\x07\u2028\u200e\u061c"), stream
    assert "ali]52;c;ZXZpbA==ce]0;pwned[2J" in outputs[0].stdout


@pytest.mark.parametrize("command", [("login",), ("token",)])
def test_a_refused_per_user_secret_stops_before_anything_is_sent_or_written(
    cli: Cli, command: tuple[str, ...]
) -> None:
    """Item 6: the secret, its directory and the lock files are checked first, so the
    password never leaves and no `.state` or lock file appears before the exit 5."""
    with server_with() as server:
        if command[0] == "token":  # logged in, then the secret's directory is opened up
            assert cli.login(server.url).returncode == 0
        before = tree(cli.project)
        cli.config_dir.mkdir(exist_ok=True)
        cli.config_dir.chmod(0o777)
        try:
            args = (*command, "--server", server.url, "--username", USER,
                    "--password-stdin") if command[0] == "login" else command
            requests = server.stats()["requests"]
            done = cli.run(*args, stdin=PASSWORD + "\n")
            assert done.returncode == 5, done.stderr
            assert "can be written by every user" in done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
            stats = server.stats()
            assert stats["requests"] == requests
            assert stats["users"].get(USER, {}).get("failed_logins", 0) == 0
            assert logins(server) == (1 if command[0] == "token" else 0)
            assert tree(cli.project) == before
        finally:
            cli.config_dir.chmod(0o700)


def test_a_look_alike_host_is_shown_with_its_ascii_form(cli: Cli) -> None:
    """A Cyrillic letter for a Latin one: the approval names the host as DNS sees it."""
    write_client_project(cli.project, server_url="https://c\u0456dx.example.com",
                         username=USER, password=FORGED_PASSWORD)
    refused = cli.run("token")
    assert refused.returncode == 2, refused.stderr
    assert "(host xn--cdx-jhd.example.com) and user alice" in refused.stderr
    shown = cli.run("approve", "--yes")
    assert "(host xn--cdx-jhd.example.com)" in shown.stdout, shown.stderr


def test_data_nested_past_any_parser_is_a_usage_error(cli: Cli) -> None:
    done = cli.run("request", "POST", "/api/query", "--data", "[" * 100_000)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "cidx-auth: error: --data is nested too deeply to be read\n"


def test_quiet_still_names_what_a_question_asks_about(
    cli: Cli, attacker: RunningServer
) -> None:
    write_client_project(cli.project, server_url=attacker.url, username=USER,
                         password=FORGED_PASSWORD)
    for command in (("-q", "approve"), ("-q", "login")):
        code, shown = answering(cli, *command, answer="n", password=PASSWORD)
        assert code == 2, shown
        question = shown.index("[y/N]")
        assert attacker.url in shown[:question] and USER in shown[:question], shown
    assert untouched(attacker)
