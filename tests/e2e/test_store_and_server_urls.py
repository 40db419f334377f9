"""Store and server URLs refused at the command line and in the project's files (issue
20, item 5): exit 2, one line on stderr, nothing written, nothing sent."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from refserver.harness import RunningServer
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, logins
from tests.settings_signing import write_signed

pytestmark = pytest.mark.slow


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port on 127.0.0.1 that would see any connection made to it (a stand-in Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nobody_called(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def refused_cleanly(done: object, cli: Cli) -> str:
    from subprocess import CompletedProcess

    assert isinstance(done, CompletedProcess)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cidx-auth: error: "), done.stderr
    assert not (cli.project / ".code-indexer" / "auth.json").exists()
    return str(lines[0])


@pytest.mark.parametrize(("query", "named"), [
    ("?foo=bar", "sets foo, which cidx-auth does not accept"),
    ("?ssl_cert_reqs=none&ssl_check_hostname=false", "sets ssl_cert_reqs, which would weaken"),
    ("?socket_timeout=nan", "sets socket_timeout to something other than a number"),
])
@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_a_store_url_with_an_unknown_or_weakening_parameter_exits_2_before_any_request(
    cli: Cli, server: RunningServer, listener: socket.socket, scheme: str, query: str,
    named: str,
) -> None:
    port = listener.getsockname()[1]
    done = cli.login(server.url, "--store", f"{scheme}://127.0.0.1:{port}/0{query}")
    assert named in refused_cleanly(done, cli)
    assert nobody_called(listener) and logins(server) == 0
    assert not (cli.project / ".code-indexer").exists()


def test_a_server_url_with_a_control_character_exits_2_from_the_command_line(
    cli: Cli, server: RunningServer,
) -> None:
    for extra in ((), ("--allow-plain-http",)):
        done = cli.login(server.url + "/a\x01b", *extra)
        line = refused_cleanly(done, cli)
        assert "--server holds a control character" in line and "\x01" not in line
    assert logins(server) == 0


def test_a_server_url_with_a_control_character_exits_2_from_auth_json(
    cli: Cli, server: RunningServer,
) -> None:
    write_signed(cli.project, {"server_url": server.url + "/a\x7fb", "username": USER},
                 cli.config_dir)
    settings = cli.project / ".code-indexer" / "auth.json"
    settings.chmod(0o600)  # as login writes it: no mode to correct, one line to say
    before = settings.read_bytes()
    for command in (("token",), ("request", "GET", "/api/repos")):
        done = cli.run(*command)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "holds a control character" in done.stderr
        assert "\x7f" not in done.stderr and "Traceback" not in done.stderr
    assert settings.read_bytes() == before
    assert logins(server) == 0


def test_a_server_url_with_a_control_character_exits_2_from_remote_config(
    cli: Cli, server: RunningServer,
) -> None:
    write_client_project(cli.project, server_url=server.url + "/a\x01b", username=USER,
                         password=PASSWORD)
    done = cli.run("token")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "has a server_url that holds a control" in done.stderr
    assert "\x01" not in done.stderr
    assert not (cli.project / ".code-indexer" / "auth.json").exists()
    assert logins(server) == 0
    login = cli.run("login", "--password-stdin", stdin=PASSWORD + "\n")  # settings from it
    assert login.returncode == 2 and "has a server_url that holds a control" in login.stderr
    assert logins(server) == 0
