"""The CLI as a user runs it: subprocesses against the reference server on loopback."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from adapters.approved_servers import ApprovedServers
from adapters.fernet_cipher import project_cipher
from adapters.file_io import read_private, write_private
from adapters.project_layout import ProjectLayout, load_settings
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session, encode_session
from cidx_auth.domain.expiry import ExpiryPolicy, TokenState
from refserver.config import ServerConfig
from refserver.harness import RunningServer

USER, PASSWORD = "alice", "correct-horse-battery"


@dataclass
class Cli:
    """Runs ``cidx-auth`` in a fresh process for one project and one user config dir."""

    project: Path
    env: dict[str, str]

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 120,
        env_extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cidx_auth", "--project", str(self.project), *args],
            input=stdin, capture_output=True, text=True, env={**self.env, **(env_extra or {})},
            timeout=timeout, check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "cidx_auth", "--project", str(self.project), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )

    def login(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("login", "--server", url, "--username", USER, "--password-stdin",
                        *extra, stdin=PASSWORD + "\n")

    def approve(self, server_url: str, username: str = USER) -> None:
        """Approve a server and user as an earlier ``cidx-auth login`` to them would have
        (in this user's config directory, under their per-user secret)."""
        ApprovedServers(self.config_dir, secret_source(self.config_dir, self.env)).add(
            server_url, username)

    @property
    def token_file(self) -> Path:
        return self.project / ".code-indexer" / ".token"

    @property
    def config_dir(self) -> Path:
        """Where this user's per-user secret lives (it signs ``auth.json``)."""
        return Path(self.env["CIDX_CONFIG_DIR"])


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(tmp_path / "config")
    return Cli(project, env)


def server_with(lifetime: int = 600, **options: object) -> RunningServer:
    config = ServerConfig(users={USER: PASSWORD}, token_lifetime=lifetime, **options)  # type: ignore[arg-type]
    return RunningServer(config)


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with server_with() as running:
        yield running


@pytest.fixture
def hs_server() -> Iterator[RunningServer]:
    """A server that signs HS256, as the real CIDX server does."""
    with server_with(alg="HS256") as running:
        yield running


def expire_stored_token(cli: Cli, missing_ok: bool = False) -> None:
    """Rewrite the stored session so its token expired a minute ago (same lifetime), as
    the client judges it: on the server clock it estimated from ``iat``. So a test makes a
    token expire at the moment it chooses, with no waiting (shifting the server's clock
    would not do it). With ``missing_ok``, no stored token is left as it is."""
    layout = ProjectLayout(cli.project)
    found = read_private(layout.token)
    if found is None and missing_ok:
        return
    assert found is not None, "no stored token to expire"
    secret = secret_source(Path(cli.env["CIDX_CONFIG_DIR"]), cli.env)
    settings = load_settings(layout, secret)  # signed under the CLI's secret
    assert settings is not None
    cipher = project_cipher(cli.project, settings.server_url, secret)
    session = decode_session(found[0], cipher)
    token = session.token
    shift = token.exp - (time.time() + session.clock_offset) + 60
    expired = replace(token, exp=token.exp - shift,
                      iat=None if token.iat is None else token.iat - shift)
    now = time.time()
    blob = encode_session(replace(session, token=expired), cipher, now)
    write_private(layout.token, blob, sweep_young=False, now=now)
    state = ExpiryPolicy().state(expired, time.time(), session.clock_offset)
    assert state is TokenState.EXPIRED


def logins(server: RunningServer, username: str = USER) -> int:
    """How many logins the server has accepted for ``username``."""
    mine: dict[str, Any] = server.stats()["users"].get(username, {})
    return int(mine.get("logins", 0))


def on_a_terminal(cli: Cli, *args: str, keys: bytes, after: bytes,
                  env_extra: dict[str, str] | None = None) -> tuple[int, str]:
    """``cidx-auth ARGS`` with a pseudo-terminal as its controlling terminal (so Ctrl-C
    there is a SIGINT); ``keys`` typed once ``after`` has been shown. Returns the exit
    code and everything it showed."""
    import fcntl
    import pty
    import termios

    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), *args],
        stdin=child, stdout=child, stderr=child, env={**cli.env, **(env_extra or {})},
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(child)
    shown, typed = b"", False
    deadline = time.monotonic() + 120  # a bound on a hang, not a timing assertion
    while time.monotonic() < deadline:
        ready, _, _ = select.select([parent], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(parent, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        if not typed and after in shown:
            os.write(parent, keys)
            typed = True
        if process.poll() is not None and not ready:
            break
    os.close(parent)
    return process.wait(timeout=60), shown.decode(errors="replace")
