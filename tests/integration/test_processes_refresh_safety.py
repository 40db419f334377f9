"""A refresh token is presented at most once, with real processes and a real server.

Every test plants an expired session through the project's own codec (the client
judges expiry on the server clock estimated from ``iat``, so shifting the server's
clock would not do), then asserts what issue 9 requires: every command exits as it
should, the reference server detected 0 replays, and it saw the number of auth calls
the ownership rule allows. Signals are sent on the server's cue ("the refresh has
rotated and its answer is held"), never after a guessed delay.

``chattr +i`` stands in for a read-only checkout and for a lock file flock cannot use
(root ignores mode bits). Each test checks first that a write really fails, skips with
the reason where it does not, and always clears the bit again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.fernet_cipher import project_cipher
from adapters.file_io import read_private
from adapters.project_layout import ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session
from refserver.harness import RunningServer
from tests.e2e.conftest import USER, Cli, expire_stored_token, server_with
from tests.integration.immutable_files import Immutable

pytestmark = [pytest.mark.posix, pytest.mark.slow]

REFRESH = "/api/auth/refresh"
CROWD = 10


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with server_with(lifetime=600) as running:
        yield running


@pytest.fixture
def cli(tmp_path: Path, server: RunningServer) -> Cli:
    """A project logged in to a freshly reset server, its stored token already expired."""
    server.reset()
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    cli = Cli(project, env)
    done = cli.login(server.url)
    assert done.returncode == 0, done.stderr
    expire_stored_token(cli)
    return cli


def counts(server: RunningServer) -> dict[str, int]:
    """The user's logins, refreshes and replays since the fixture's reset (login included)."""
    mine: dict[str, Any] = server.stats()["users"].get(USER, {})
    return {key: int(mine.get(key, 0)) for key in ("logins", "refreshes", "replays")}


def assert_token_works(server: RunningServer, printed: str) -> None:
    token = printed.strip()
    with server.client() as http:
        answer = http.get("/api/repos", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even under `cmd &`


def start(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env,
        preexec_fn=_default_signals,
    )


def finish(child: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out, err


# a. A command stopped while its refresh is held at the server ---------------------------

STOPS = [
    pytest.param(signal.SIGINT, 130, "cidx-auth: interrupted", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "cidx-auth: terminated", id="SIGTERM"),
    pytest.param(signal.SIGKILL, -signal.SIGKILL, None, id="kill-9"),
]


@pytest.mark.parametrize(("signum", "code", "line"), STOPS)
def test_a_command_stopped_during_its_refresh_causes_no_replay(
    cli: Cli, server: RunningServer, signum: int, code: int, line: str | None
) -> None:
    server.hold(REFRESH, seconds=60)
    child = start(cli, "token")
    try:
        server.wait_held()  # the refresh has rotated: the stored refresh token is spent
        child.send_signal(signum)
    finally:
        returncode, out, err = finish(child)
    assert (returncode, out) == (code, "")
    if line is not None:
        assert err.splitlines() == [line]
    after = cli.run("token")
    assert after.returncode == 0, after.stderr
    assert_token_works(server, after.stdout)
    # The spent token is never presented again: the next command logs in instead.
    assert counts(server) == {"logins": 2, "refreshes": 1, "replays": 0}


# b. Project files that cannot be written ------------------------------------------------


@pytest.mark.parametrize("directory_too", [False, True], ids=["files", "files-and-directory"])
def test_unwritable_project_files_cause_no_replay(
    cli: Cli, server: RunningServer, immutable: Immutable, directory_too: bool
) -> None:
    store = cli.project / ".code-indexer"
    files = sorted(path for path in store.iterdir() if path.is_file())
    assert store / ".token" in files and store / ".token.lock" in files
    immutable.set(*[*files, store] if directory_too else files)

    for turn in range(3):
        done = cli.run("token")
        assert done.returncode == 0, f"command {turn + 1}: {done.stderr}"
        assert_token_works(server, done.stdout)
    during = counts(server)
    assert during["replays"] == 0, during
    # Nothing can be saved, so each command needs exactly one auth call of its own.
    assert during["logins"] - 1 + during["refreshes"] == 3, during
    if directory_too:  # no intent can be recorded anywhere: the stored token is never sent
        assert during["refreshes"] == 0, during

    immutable.release()
    done = cli.run("token")
    assert done.returncode == 0, done.stderr
    assert_token_works(server, done.stdout)
    after = counts(server)
    assert after["replays"] == 0, after
    assert after["logins"] + after["refreshes"] == during["logins"] + during["refreshes"] + 1


# c. A lock file flock cannot use --------------------------------------------------------


@pytest.mark.crowd
def test_an_unusable_lock_file_with_a_crowd_causes_no_replay(
    cli: Cli, server: RunningServer, immutable: Immutable
) -> None:
    lock_file = ProjectLayout(cli.project).token_lock
    assert lock_file.is_file()
    immutable.set(lock_file)

    crowd = [start(cli, "token") for _ in range(CROWD)]
    results = [finish(child) for child in crowd]
    failures = [(code, err) for code, _, err in results if code != 0]
    assert not failures, failures[:3]
    for _, out, _ in results:
        assert_token_works(server, out)
    after = counts(server)
    assert after["replays"] == 0, after
    # An immutable lock file is flocked through a read-only descriptor, so the crowd
    # still makes one auth call between them (the O_EXCL fallback, for mounts without
    # flock, is exercised in test_lock_trouble.py).
    assert after["logins"] - 1 + after["refreshes"] == 1, after


@pytest.mark.replays(1)  # the copy, then the CLI, present one refresh token
def test_a_replay_the_server_reports_is_news_to_the_user(
    cli: Cli, server: RunningServer
) -> None:
    """Someone else presented this session's refresh token first (a copied .token): the
    command recovers by logging in, and says so in one line at default verbosity."""
    layout = ProjectLayout(cli.project)
    secret = secret_source(Path(cli.env["CIDX_CONFIG_DIR"]), cli.env)
    settings = load_settings(layout, secret)  # signed under the CLI's secret
    assert settings is not None
    found = read_private(layout.token)
    assert found is not None
    stolen = decode_session(found[0], project_cipher(cli.project, settings.server_url, secret))
    with server.client() as http:  # the copy is used elsewhere first
        assert http.post("/api/auth/refresh",
                         json={"refresh_token": stolen.refresh_token}).status_code == 200
    expire_stored_token(cli)
    result = cli.run("token")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "used twice" in line]
    assert len(warnings) == 1 and "copied" in warnings[0]
    assert stolen.refresh_token not in result.stderr
    assert counts(server)["replays"] == 1
