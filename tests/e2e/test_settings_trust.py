"""The settings as trust: a hand-edited, unsigned or copied ``auth.json`` stops the command
until ``login`` records the settings again, the CA bundle is pinned by content, and no
password rides in a server or store URL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.fernet_cipher import project_cipher
from adapters.file_io import read_private
from adapters.project_layout import ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from refserver.tls import ensure_tls_material
from tests.cidx_client_format import write_client_project
from tests.e2e.conftest import PASSWORD, USER, Cli, expire_stored_token
from tests.settings_signing import write_signed

HIDDEN = "hunter2-do-not-print"  # must never be echoed
CHANGED = "was changed outside cidx-auth"


@pytest.fixture
def tls_server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={USER: PASSWORD}), tls=True) as running:
        yield running


def settings_file(cli: Cli) -> Path:
    return cli.project / ".code-indexer" / "auth.json"


def hand_edit(cli: Cli, **changes: Any) -> None:
    """What a user, or anyone who can write the file, does: the MAC is left as it was."""
    document = json.loads(settings_file(cli).read_text())
    document.update(changes)
    settings_file(cli).write_text(json.dumps(document))


def refused(cli: Cli, *command: str, expected: str = CHANGED) -> None:
    """``command`` stops with exit 2, says what is wrong and that `login` fixes it."""
    result = cli.run(*command)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert expected in result.stderr and "cidx-auth login" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_hand_edited_store_url_stops_every_command_until_login(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    hand_edit(cli, store_url="redis://attacker.example:6379/0")
    before = settings_file(cli).read_bytes()
    for command in (("token",), ("token", "--refresh"), ("request", "GET", "/api/repos"),
                    ("logout",)):
        refused(cli, *command)
    status = cli.run("status")  # a question: whatever it answers, it says why, changes nothing
    assert CHANGED in status.stdout + status.stderr
    assert settings_file(cli).read_bytes() == before
    again = cli.login(server.url)  # login trusts nothing of the old file
    assert again.returncode == 0, again.stderr
    assert json.loads(settings_file(cli).read_text())["store_url"] is None
    assert cli.run("token").returncode == 0


def test_an_unsigned_file_of_an_earlier_version_is_refused_and_login_fixes_it(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    document = json.loads(settings_file(cli).read_text())
    for added in ("mac", "ca_bundle_sha256"):  # what cidx-auth wrote before this change
        del document[added]
    settings_file(cli).write_text(json.dumps(document))
    refused(cli, "token", expected="is not signed")
    assert cli.login(server.url).returncode == 0
    token = cli.run("token")
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr


def test_settings_copied_from_another_project_are_refused(
    cli: Cli, server: RunningServer, tmp_path: Path
) -> None:
    assert cli.login(server.url).returncode == 0
    other = Cli(tmp_path / "other", cli.env)
    (other.project / ".code-indexer").mkdir(parents=True, mode=0o700)
    shutil.copy(settings_file(cli), settings_file(other))
    refused(other, "token", expected="copied from another project")


def test_signed_settings_whose_secret_is_gone_are_refused_and_nothing_is_made(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    secret = cli.config_dir / "user.secret"
    secret.unlink()
    refused(cli, "token", expected="user.secret is missing")
    assert not secret.exists()  # reading settings never creates a secret
    assert cli.login(server.url).returncode == 0  # login makes a new one and signs with it
    assert secret.exists() and cli.run("token").returncode == 0


def test_a_changed_ca_bundle_path_or_content_stops_the_command(
    cli: Cli, tls_server: RunningServer, tmp_path: Path
) -> None:
    assert tls_server.ca_file is not None
    ca = tmp_path / "trusted-ca.pem"
    shutil.copy(tls_server.ca_file, ca)
    done = cli.login(tls_server.url, "--ca-bundle", str(ca))
    assert done.returncode == 0, done.stderr
    assert cli.run("request", "GET", "/api/repos").returncode == 0
    attacker = ensure_tls_material(tmp_path / "attacker").ca_file
    hand_edit(cli, ca_bundle=str(attacker))  # the path: the MAC catches it
    refused(cli, "request", "GET", "/api/repos")
    assert cli.login(tls_server.url, "--ca-bundle", str(ca)).returncode == 0
    ca.write_bytes(attacker.read_bytes())  # the content, behind the same path
    changed = cli.run("request", "GET", "/api/repos")
    assert changed.returncode == 2, changed.stderr
    assert f"the CA bundle {ca} is not the file" in changed.stderr
    assert "cidx-auth login --ca-bundle" in changed.stderr
    ca.write_bytes(tls_server.ca_file.read_bytes() + b"# renewed by the admin\n")
    assert cli.run("request", "GET", "/api/repos").returncode == 2  # still not accepted
    assert cli.login(tls_server.url, "--ca-bundle", str(ca)).returncode == 0  # accepted
    assert cli.run("request", "GET", "/api/repos").returncode == 0


def test_a_changed_ca_bundle_stops_a_renewal_before_it_sets_the_refresh_token_aside(
    cli: Cli, tls_server: RunningServer, tmp_path: Path
) -> None:
    assert tls_server.ca_file is not None
    ca = tmp_path / "trusted-ca.pem"
    shutil.copy(tls_server.ca_file, ca)
    assert cli.login(tls_server.url, "--ca-bundle", str(ca)).returncode == 0
    expire_stored_token(cli)  # `token` must renew: the refresh token would be sent
    ca.write_bytes(ensure_tls_material(tmp_path / "attacker").ca_file.read_bytes())
    done = cli.run("token")
    assert done.returncode == 2 and f"the CA bundle {ca} is not the file" in done.stderr
    layout = ProjectLayout(cli.project)
    secret = secret_source(cli.config_dir, cli.env)
    settings = load_settings(layout, secret)
    assert settings is not None
    found = read_private(layout.token)
    assert found is not None
    session = decode_session(found[0], project_cipher(cli.project, settings.server_url, secret))
    assert session.refresh_token is not None and not session.refresh_in_flight


@pytest.mark.parametrize("store", [
    f"redis://:{HIDDEN}@127.0.0.1:6379/0",
    f"redis://default:{HIDDEN}@127.0.0.1:6379/0",
    f"redis://127.0.0.1:6379/0?password={HIDDEN}",
])
def test_a_store_password_on_the_command_line_is_refused(
    cli: Cli, server: RunningServer, store: str
) -> None:
    result = cli.login(server.url, "--store", store)
    assert result.returncode == 2, result.stderr
    assert "CIDX_STORE_PASSWORD" in result.stderr and "CIDX_STORE_PASSWORD_FILE" in result.stderr
    assert HIDDEN not in result.stdout + result.stderr
    assert not settings_file(cli).exists()


@pytest.mark.parametrize("userinfo", [f"alice:{HIDDEN}@", f":{HIDDEN}@", "alice@"])
def test_a_server_url_with_userinfo_is_refused_wherever_it_enters(
    cli: Cli, server: RunningServer, userinfo: str
) -> None:
    with_userinfo = server.url.replace("://", f"://{userinfo}")
    outputs = []
    for extra in ((), ("--allow-plain-http",)):
        login = cli.login(with_userinfo, *extra)
        assert login.returncode == 2 and "user name or password" in login.stderr, login.stderr
        outputs.append(login.stdout + login.stderr)
    assert not settings_file(cli).exists()
    write_signed(cli.project, {"server_url": with_userinfo, "username": USER}, cli.config_dir)
    planted = cli.run("token")  # in auth.json, even signed
    assert planted.returncode == 2 and "user name or password" in planted.stderr
    outputs.append(planted.stdout + planted.stderr + cli.run("status").stdout)
    assert all(HIDDEN not in output for output in outputs), outputs


def test_a_cidx_client_server_url_with_userinfo_is_not_adopted(
    cli: Cli, server: RunningServer
) -> None:
    write_client_project(cli.project, server_url=server.url.replace("://", f"://u:{HIDDEN}@"),
                         username=USER, password=PASSWORD)
    result = cli.run("token")
    assert result.returncode == 2 and "user name or password" in result.stderr, result.stderr
    assert HIDDEN not in result.stdout + result.stderr
    assert not settings_file(cli).exists()
    for shown in (cli.run("status"), cli.run("status", "--json")):  # answered: not logged in
        assert shown.returncode == 3, shown.stderr
        assert "user name or password" in shown.stdout, shown.stdout
        assert HIDDEN not in shown.stdout + shown.stderr


def test_settings_written_at_adoption_are_signed(cli: Cli, hs_server: RunningServer) -> None:
    write_client_project(cli.project, server_url=hs_server.url, username=USER,
                         password=PASSWORD)
    cli.approve(hs_server.url)
    assert cli.run("token").returncode == 0
    assert isinstance(json.loads(settings_file(cli).read_text())["mac"], str)
    assert cli.run("token").returncode == 0  # adopted settings verify
    hand_edit(cli, username="mallory")
    refused(cli, "token")
