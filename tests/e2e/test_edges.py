"""Security at the edges, as a user meets them (issue 10): planted lock-file links and
the algorithm pin against a server signing HS256, as the real CIDX server does."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli, expire_stored_token, logins
from tests.settings_signing import edit_signed

pytestmark = pytest.mark.slow

BASHRC = b"export PATH=$HOME/bin:$PATH\n"


def plant_link(cli: Cli, lock: str) -> Path:
    target = cli.project.parent / "bashrc"
    target.write_bytes(BASHRC)
    os.chmod(target, 0o644)
    directory = cli.project / ".code-indexer"
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / lock).unlink(missing_ok=True)
    (directory / lock).symlink_to(target)
    return target


def untouched(cli: Cli, lock: str, target: Path) -> None:
    assert target.read_bytes() == BASHRC and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert (cli.project / ".code-indexer" / lock).is_symlink()  # never moved or "fixed"


@pytest.mark.parametrize("lock", [".token.lock", ".state.lock"])
def test_a_lock_link_planted_before_login_is_refused_and_its_target_left_alone(
    cli: Cli, server: RunningServer, lock: str
) -> None:
    target = plant_link(cli, lock)
    login = cli.login(server.url)
    assert login.returncode == 5 and "symbolic link" in login.stderr, login.stderr
    assert "Traceback" not in login.stderr
    untouched(cli, lock, target)


@pytest.mark.parametrize("lock", [".token.lock", ".state.lock"])
def test_a_lock_link_planted_before_a_refresh_is_refused_and_its_target_left_alone(
    cli: Cli, server: RunningServer, lock: str
) -> None:
    assert cli.login(server.url).returncode == 0
    target = plant_link(cli, lock)
    expire_stored_token(cli)
    refresh = cli.run("token")
    assert refresh.returncode == 5 and "symbolic link" in refresh.stderr, refresh.stderr
    untouched(cli, lock, target)
    status = cli.run("status", "--json")  # a question, answered; it writes nothing
    assert status.returncode == 0, status.stderr
    untouched(cli, lock, target)


def test_a_damaged_settings_file_does_not_block_the_login_that_rewrites_it(
    cli: Cli, server: RunningServer
) -> None:
    settings = cli.project / ".code-indexer" / "auth.json"
    settings.parent.mkdir(mode=0o700)
    settings.write_text("{not json")
    assert cli.run("token").returncode == 2  # says what is wrong, and to log in
    login = cli.login(server.url)
    assert login.returncode == 0, login.stderr
    assert json.loads(settings.read_text())["username"] == "alice"


def test_the_first_login_pins_hs256_and_a_token_off_the_pin_is_refused(
    cli: Cli, hs_server: RunningServer
) -> None:
    done = cli.login(hs_server.url)
    assert done.returncode == 0 and "HS256" in done.stdout, done.stderr
    assert logins(hs_server) == 1  # one attempt, not a refused one and another
    settings_file = cli.project / ".code-indexer" / "auth.json"
    settings = json.loads(settings_file.read_text())
    assert settings["allowed_algorithms"] == ["HS256"]
    # as if pinned on a server signing RS256 (signed: settings change only through login)
    edit_signed(cli.project, cli.config_dir, allowed_algorithms=["RS256"])
    expire_stored_token(cli)
    refused = cli.run("token")
    assert refused.returncode == 3, refused.stderr
    assert "HS256" in refused.stderr and "RS256" in refused.stderr  # names both
    assert "Traceback" not in refused.stderr
