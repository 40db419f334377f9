"""Security at the edges, as a user meets them (issue 10): planted lock-file links and
the algorithm pin against a server signing HS256, as the real CIDX server does."""

from __future__ import annotations

import json
import os
import stat

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli, logins
from tests.integration.test_processes_refresh_safety import expire_stored_token

pytestmark = pytest.mark.slow

BASHRC = b"export PATH=$HOME/bin:$PATH\n"


@pytest.mark.parametrize("lock", [".token.lock", ".state.lock"])
def test_a_planted_lock_link_never_touches_its_target(
    cli: Cli, server: RunningServer, lock: str
) -> None:
    target = cli.project.parent / "bashrc"
    target.write_bytes(BASHRC)
    os.chmod(target, 0o644)
    directory = cli.project / ".code-indexer"
    directory.mkdir(mode=0o700)
    (directory / lock).symlink_to(target)
    login = cli.login(server.url)
    if lock == ".token.lock":  # the token lock is needed: a clear refusal, exit 5
        assert login.returncode == 5 and "symbolic link" in login.stderr, login.stderr
    else:  # the state lock is not: the breaker's state is not persisted, with a warning
        assert login.returncode == 0, login.stderr
        expire_stored_token(cli)
        assert cli.run("token").returncode == 0  # a refresh, past the planted link again
    assert "Traceback" not in login.stderr
    assert target.read_bytes() == BASHRC and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert (directory / lock).is_symlink()  # never moved, deleted or "fixed"


def test_the_first_login_pins_hs256_and_a_token_off_the_pin_is_refused(
    cli: Cli, hs_server: RunningServer
) -> None:
    done = cli.login(hs_server.url)
    assert done.returncode == 0 and "HS256" in done.stdout, done.stderr
    assert logins(hs_server) == 1  # one attempt, not a refused one and another
    settings_file = cli.project / ".code-indexer" / "auth.json"
    settings = json.loads(settings_file.read_text())
    assert settings["allowed_algorithms"] == ["HS256"]
    settings["allowed_algorithms"] = ["RS256"]  # as if pinned on a server signing RS256
    settings_file.write_text(json.dumps(settings))
    expire_stored_token(cli)
    refused = cli.run("token")
    assert refused.returncode == 3, refused.stderr
    assert "HS256" in refused.stderr and "RS256" in refused.stderr  # names both
    assert "Traceback" not in refused.stderr
