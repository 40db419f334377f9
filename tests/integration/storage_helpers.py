"""Helpers for the storage tests, and the child processes they start.

The tests import this module; it is also run as a script by path
(``python storage_helpers.py COMMAND ...``) in child processes, so its top-level
imports stay light (no pytest, no hypothesis) and it never imports ``tests``.

:class:`CountingServer` is a fake CIDX auth server whose state (issued refresh
tokens, used ones, revoked families, call counts, replays) lives in a JSON file under
its own file lock, so that many processes share one server and the test can count
every call. It keeps the real server's reuse rule: a used refresh token presented again
revokes its whole family. The test suite reads ``replays_seen()`` after every test.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import filelock

from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import InvalidCredentials, RefreshRejected, StorageError
from cidx_auth.domain.token import Grant, Session, TokenRules, parse_access_token

HELPERS = Path(__file__).resolve()
SERVER_URL = "https://cidx.test"
ALICE = Credentials("alice", "correct horse battery staple")


REPLAY_REASON = "replay_attack"


class CountingServer:
    """Rotating refresh tokens with replay detection, shared by processes via a file.

    As on the real server (``server-contract.md``), in the order it checks: an unknown
    token answers "Invalid refresh token"; a token of a revoked family "Refresh token
    revoked due to replay_attack"; a used one "Token replay attack detected", counts a
    replay and revokes its family (each login starts one; a refresh continues it).

    Each call waits ``latency`` seconds (a random draw in the range) outside the state
    lock, as a real server's round trip would, so callers from many processes overlap.
    """

    def __init__(
        self,
        state_path: Path,
        users: dict[str, str] | None = None,
        lifetime: float = 600.0,
        latency: tuple[float, float] = (0.05, 0.1),
    ) -> None:
        self.state_path = Path(state_path)
        self.users = users if users is not None else {ALICE.username: ALICE.password}
        self.lifetime = lifetime
        self.latency = latency
        self._lock = filelock.FileLock(f"{self.state_path}.lock", thread_local=False)

    def login(self, credentials: Credentials) -> Grant:
        self._wait()

        def call(state: dict[str, Any]) -> Grant:
            state["logins"] += 1
            if self.users.get(credentials.username) != credentials.password:
                raise InvalidCredentials("the server refused the username or password")
            return self._issue(state, credentials.username, time.time())

        return self._transact(call)

    def refresh(self, refresh_token: str) -> Grant:
        self._wait()

        def call(state: dict[str, Any]) -> Grant:
            state["refreshes"] += 1
            username = state["issued"].get(refresh_token)
            if username is None:
                raise RefreshRejected("Invalid refresh token")
            family = state["family"][refresh_token]
            if family in state["revoked"]:
                raise RefreshRejected(f"Refresh token revoked due to {REPLAY_REASON}")
            if refresh_token in state["used"]:
                state["replays"] += 1
                state["revoked"].append(family)
                raise RefreshRejected("Token replay attack detected")
            state["used"].append(refresh_token)
            return self._issue(state, username, time.time(), family)

        return self._transact(call)

    async def alogin(self, credentials: Credentials) -> Grant:
        import asyncio  # here, not at the top: the kill -9 writer starts faster without it

        return await asyncio.to_thread(self.login, credentials)

    async def arefresh(self, refresh_token: str) -> Grant:
        import asyncio

        return await asyncio.to_thread(self.refresh, refresh_token)

    def seed(self, username: str, issued_at: float) -> Grant:
        """A grant issued at ``issued_at`` (e.g. long expired), without counting a call."""
        return self._transact(lambda state: self._issue(state, username, issued_at))

    def stats(self) -> dict[str, int]:
        """Calls so far: logins, refreshes, replays."""
        state = self._transact(lambda state: state)
        return {key: state[key] for key in ("logins", "refreshes", "replays")}

    def replays_seen(self) -> int:
        """Every replay this server's file has recorded (what the suite's watch reads);
        reading takes no lock and writes nothing (the file is only ever replaced whole), so
        a server nobody called leaves no file behind."""
        try:
            return int(json.loads(self.state_path.read_text())["replays"])
        except FileNotFoundError:
            return 0

    def _wait(self) -> None:
        low, high = self.latency
        if high > 0:
            time.sleep(random.uniform(low, high))

    def _issue(self, state: dict[str, Any], username: str, now: float,
               family: int | None = None) -> Grant:
        from adapters.memory import make_jwt

        if family is None:  # a login: a new family
            family = state["families"]
            state["families"] += 1
        claims = {"username": username, "iat": now, "exp": now + self.lifetime}
        token = make_jwt({**claims, "jti": secrets.token_hex(16)})
        refresh = secrets.token_urlsafe(32)
        state["issued"][refresh] = username
        state["family"][refresh] = family
        return Grant(token, refresh)

    def _transact(self, call: Callable[[dict[str, Any]], Any]) -> Any:
        with self._lock:
            try:
                state = json.loads(self.state_path.read_text())
            except FileNotFoundError:
                state = {"logins": 0, "refreshes": 0, "replays": 0, "issued": {}, "used": [],
                         "families": 0, "family": {}, "revoked": []}
            try:
                return call(state)
            finally:
                temp = self.state_path.with_suffix(".tmp")
                temp.write_text(json.dumps(state))
                os.replace(temp, self.state_path)


def session_of(grant: Grant, username: str = ALICE.username) -> Session:
    """The session the provider would keep for ``grant`` (clock offset 0)."""
    claims = json.loads(_b64(grant.access_token.split(".")[1]))
    token = parse_access_token(grant.access_token, TokenRules(), float(claims["iat"]))
    return Session(token, grant.refresh_token, 0.0, username)


def known_sessions() -> tuple[Session, Session]:
    """Two fixed sessions, identical in every process, for the kill -9 writer."""
    from adapters.memory import make_jwt  # imported here: it pulls in asyncio

    sessions = []
    for number in (1, 2):
        issued = 1_800_000_000 + number
        claims = {"username": "alice", "iat": issued, "exp": issued + 600, "jti": f"k{number}"}
        sessions.append(session_of(Grant(make_jwt(claims), f"refresh-{number}")))
    return sessions[0], sessions[1]


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_store(project: Path, config_dir: Path, server_url: str = SERVER_URL) -> Any:
    """A FileTokenStore for ``project``, keyed like ``build_project`` keys it."""
    from adapters.fernet_cipher import project_cipher
    from adapters.file_token_store import FileTokenStore
    from adapters.project_layout import ProjectLayout
    from adapters.user_secret import UserSecret

    layout = ProjectLayout(project)
    cipher = project_cipher(project, server_url, UserSecret(config_dir))
    return FileTokenStore(layout.token, layout.token_lock, cipher)


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.005)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0,
               every: float = 0.005) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; fail after a generous
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


def start_together(
    count: int, command: list[str], ready_dir: Path, go: Path
) -> list[tuple[int, str, str]]:
    """Start ``count`` helper children, wait until all are ready, then let them go at once.

    Returns each child's (exit code, stdout, stderr).
    """
    import subprocess

    ready_dir.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, str(HELPERS), *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]
    return release_together(children, ready_dir, go, timeout=60)


def release_together(
    children: list[Any], ready_dir: Path, go: Path, timeout: float
) -> list[tuple[int, str, str]]:
    """Wait until every child has put a file in ``ready_dir``, touch ``go``, collect them.

    A child that dies early fails the wait at once; every child is killed on the way out.
    """
    try:
        deadline = time.monotonic() + timeout
        while len(list(ready_dir.iterdir())) < len(children):
            dead = [child for child in children if child.poll() is not None]
            if dead:
                raise RuntimeError(f"a child failed: {dead[0].communicate()[1]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the children did not all get ready in time")
            time.sleep(0.02)
        go.touch()
        outputs = [child.communicate(timeout=timeout) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    codes = [child.returncode for child in children]
    return [(code, out, err) for code, (out, err) in zip(codes, outputs, strict=True)]


# ---- child processes -------------------------------------------------------------


class GatheringServer(CountingServer):
    """Answers no call until ``count`` processes have put a file in ``asking``: all of them
    are then inside ``get_token`` before the first one gets a token."""

    def __init__(self, state_path: Path, asking: Path, count: int) -> None:
        super().__init__(state_path)
        self.asking, self.count = asking, count

    def _wait(self) -> None:
        wait_until(lambda: len(list(self.asking.iterdir())) >= self.count,
                   "every process asking for a token")


def race(project: str, config: str, server_state: str, ready_dir: str, go: str,
         asking: str, count: str) -> None:
    """Build a provider over the files, say ready, wait for go; say it is asking (in
    ``asking``) and get a token from a server that waits for ``count`` such processes;
    print the token and when it started and finished asking for it."""
    from cidx_auth.app.container import build_project

    server = GatheringServer(Path(server_state), Path(asking), int(count))
    container = build_project(Path(project), SERVER_URL, server, config_dir=Path(config))
    provider = container.token_provider()
    (Path(ready_dir) / str(os.getpid())).touch()
    wait_for(Path(go))
    started = time.time()
    (Path(asking) / str(os.getpid())).touch()
    token = provider.get_token()
    print(token, started, time.time(), flush=True)


def secret(config: str, ready_dir: str, go: str) -> None:
    """Wait for go, then read or create the per-user secret and print a digest of it."""
    import hashlib

    from adapters.user_secret import UserSecret

    user_secret = UserSecret(Path(config))
    (Path(ready_dir) / str(os.getpid())).touch()
    wait_for(Path(go))
    print(hashlib.sha256(user_secret.value()).hexdigest(), flush=True)


def writer(project: str, config: str) -> None:
    """Save the two known sessions in turn, forever; one byte on stdout per save done."""
    store = token_store(Path(project), Path(config))
    sessions = known_sessions()
    store._cipher.encrypt(b"warm-up")  # derive the key before saying ready
    os.write(1, b"R")
    for turn in range(sys.maxsize):
        with store.lock(5.0):
            store.save(sessions[turn % 2])
        os.write(1, b".")


def hold_lock(lock_path: str, ready: str) -> None:
    """Hold a lock file until stdin closes: "another cidx process" holding the lock."""
    with filelock.FileLock(lock_path, mode=0o600, thread_local=False):
        Path(ready).touch()
        sys.stdin.read()


def full_disk(project: str, config: str, limit: str) -> None:
    """With writes capped at ``limit`` bytes, try to save a session; report as JSON."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
    store = token_store(Path(project), Path(config))
    store._cipher.encrypt(b"warm-up")
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    report: dict[str, Any] = {"error": None}
    try:
        with store.lock(5.0):
            store.save(known_sessions()[1])
    except StorageError as error:
        report["error"] = [type(error).__name__, str(error)]
    print(json.dumps(report), flush=True)


def full_disk_provider(project: str, config: str, limit: str) -> None:
    """A provider whose token cannot be saved: it must still hand out a token."""
    import resource

    from adapters.events import CountingSink
    from adapters.memory import FakeClock, ScriptedGateway
    from cidx_auth.app.container import build_project
    from cidx_auth.domain.events import EventKind

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    clock = FakeClock(time.time())
    gateway = ScriptedGateway(clock, {ALICE.username: ALICE.password})
    sink = CountingSink()
    container = build_project(
        Path(project), SERVER_URL, gateway,
        clock=clock, extra_sinks=(sink,), config_dir=Path(config),
    )
    provider = container.token_provider()
    container.token_store()._cipher.encrypt(b"warm-up")
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    token = provider.get_token()
    clock.advance(400)  # stale: renews, and cannot save again; still one warning
    renewed = provider.get_token()
    report = {
        "token": token,
        "renewed": renewed,
        "degraded": sink[EventKind.STORAGE_DEGRADED],
        "calls": gateway.calls,
    }
    print(json.dumps(report), flush=True)


COMMANDS: dict[str, Callable[..., None]] = {
    "race": race,
    "secret": secret,
    "writer": writer,
    "hold-lock": hold_lock,
    "full-disk": full_disk,
    "full-disk-provider": full_disk_provider,
}


def main() -> None:
    COMMANDS[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
