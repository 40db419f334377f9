"""In-memory adapters and fakes: deterministic stand-ins for every port.

Tests import these, and so may users' own tests::

    ports = memory_ports(users={"alice": "secret"})
    container = Container(**ports.wiring())      # cidx_auth.app.container
    token = container.token_provider().get_token()
    ports.clock.advance(600)                     # the token expires; nobody sleeps
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AccountLocked,
    CidxAuthError,
    InvalidCredentials,
    LockTimeout,
    LockUnavailable,
    RefreshRejected,
    ServerUnavailable,
    StorageError,
)
from cidx_auth.domain.token import Grant, Session


class FakeClock:
    """A clock that moves only when told to; ``sleep`` moves it instead of waiting.
    Calling it is ``now()``, for whatever takes a plain time function (the reference
    server, the file stores' ``clock=``)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative number)."""
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class _Failing:
    """Lets a test make the next operations raise a storage error."""

    def __init__(self) -> None:
        self.failure: StorageError | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure


class MemoryTokenStore(_Failing):
    """A token store in a variable, with a real (thread) lock and call counts."""

    def __init__(self, session: Session | None = None) -> None:
        super().__init__()
        self.session = session
        self.loads = 0
        self.saves = 0
        self.lock_wanted = threading.Event()
        """Set when someone starts waiting for the lock: a test's cue, instead of a sleep."""
        self.lock_failure: CidxAuthError | None = None
        """Raised on taking the lock while the rest of the store works (an immutable lock
        file, a mount without flock); a failing store fails its lock too."""
        self._lock = threading.Lock()

    def load(self) -> Session | None:
        self._check()
        self.loads += 1
        return self.session

    def save(self, session: Session) -> None:
        self._check()
        self.saves += 1
        self.session = session

    def clear(self) -> None:
        self._check()
        self.session = None

    @contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        if self.lock_failure is not None:
            raise self.lock_failure
        if self.failure is not None:  # broken storage: no lock file can be had either
            raise LockUnavailable(f"the token lock cannot be taken: {self.failure}")
        self.lock_wanted.set()
        if not self._lock.acquire(timeout=timeout):
            raise LockTimeout(f"token lock not acquired within {timeout:.0f} s")
        try:
            yield
        finally:
            self._lock.release()

    @property
    def locked(self) -> bool:
        return self._lock.locked()


class MemoryCredentialStore(_Failing):
    def __init__(self, credentials: Credentials | None = None) -> None:
        super().__init__()
        self.credentials = credentials

    def load(self) -> Credentials | None:
        self._check()
        return self.credentials

    def save(self, credentials: Credentials) -> None:
        self._check()
        self.credentials = credentials

    def clear(self) -> None:
        self._check()
        self.credentials = None


class MemoryStateStore:
    """Breaker state and counters in a variable; ``update`` is atomic across threads."""

    def __init__(self, state: ClientState | None = None) -> None:
        self.state = state or ClientState()
        self._lock = threading.Lock()

    def read(self) -> ClientState:
        return self.state

    def update(self, change: Callable[[ClientState], ClientState]) -> ClientState:
        with self._lock:
            new = change(self.state)
            if new != self.state:
                self.state = new
            return self.state


def make_jwt(
    claims: dict[str, Any], alg: str = "RS256", header: dict[str, Any] | None = None
) -> str:
    """An unsigned-but-well-formed JWT for tests: the client never checks signatures."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': alg, 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


REFRESH_LIFETIME = 604_800.0
"""Seconds a refresh token lives on the CIDX server (``refresh_token_expires_in``)."""
LOCKOUT_THRESHOLD = 5
"""Wrong passwords within ``LOCKOUT_WINDOW`` that lock a username (known or not)."""
LOCKOUT_WINDOW = 900.0
LOCKOUT_SECONDS = 900.0
"""How long a lockout lasts: every login for that name is refused, right password or not."""


class ScriptedGateway:
    """A fake CIDX auth server that keeps the real one's rules, with counts and failures
    on demand (``fail_next``). Implements the ``AuthGateway`` port.

    As on the real server (``server-contract.md``): each login starts a token family;
    each refresh token works once and is replaced by the next of its family; presenting
    a used one answers "Token replay attack detected" and revokes the whole family, whose
    later tokens answer "Refresh token revoked due to replay_attack"; a refresh token
    expires ``refresh_lifetime`` seconds (7 days) after it was issued; 5 wrong passwords
    within 15 minutes lock the username for 15 minutes (``AccountLocked``, even with the
    right password), and a right one clears the count. A grant a test injects
    (``answer_next``) is issued like any other: its refresh token joins the family of the
    call it answers, works once, and counts as a replay when presented again.

    ``replays`` counts every refresh token presented again after an earlier presentation
    reached the server, whatever that one was answered (a failure scripted with
    ``fail_next`` counts as having reached it, unless it is a ``ServerUnavailable`` with
    ``reached=False``); the test suite fails any test whose count differs from the one it
    declared in ``expected_replays``. This is stricter than the real server on purpose:
    that one checks a revoked family and an expired token before a used one, so a token
    sent again after "revoked" or "expired" is answered so there and not logged as a
    replay; here it is a replay, since a client that sends a refresh token twice is wrong
    whatever the first answer was.
    """

    def __init__(
        self,
        clock: FakeClock,
        users: dict[str, str] | None = None,
        lifetime: float = 600.0,
        alg: str = "RS256",
        refresh_lifetime: float = REFRESH_LIFETIME,
    ) -> None:
        self.clock = clock
        self.users = dict(users or {"alice": "secret"})
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime
        self.alg = alg
        self.logins = 0
        self.refreshes = 0
        self.replays = 0
        self.expected_replays = 0
        """How many replays the test provokes on purpose; any other count fails it."""
        self.server_offset = 0.0
        self.send_date = False
        self.gate: threading.Event | None = None
        """When set up, logins and refreshes wait here until the test opens it."""
        self.at_gate = threading.Event()
        """Set once a call is waiting at the gate: the test's cue, instead of a sleep."""
        self.lose_answers = 0
        """Refreshes still to lose their answer: rotated at the server, then a timeout."""
        self._script: deque[CidxAuthError | Grant] = deque()
        self._family_of: dict[str, int] = {}
        self._expires_at: dict[str, float] = {}
        self._owner: dict[int, str] = {}
        self._reached: set[str] = set()
        """Refresh tokens that were presented and got here: spent, refused or rotated."""
        self._revoked: dict[int, str] = {}
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self.logins + self.refreshes

    def fail_next(self, error: CidxAuthError, times: int = 1) -> None:
        """The next ``times`` calls raise ``error`` before the server acts on them."""
        self._script.extend([error] * times)

    def clear_faults(self) -> None:
        """Drop every failure still armed: the server behaves from now on."""
        self._script.clear()
        self.lose_answers = 0

    def answer_next(self, grant: Grant) -> None:
        """The next call answers with ``grant`` as it is (to test bad tokens); its refresh
        token is then issued as the server's own would be."""
        self._script.append(grant)

    def revoke_all(self) -> None:
        """Every refresh token dies, as after the server revokes the user's sessions."""
        with self._lock:
            for family in self._owner:
                self._revoked.setdefault(family, "admin_revoke")

    def login(self, credentials: Credentials) -> Grant:
        self._wait_gate()
        with self._lock:
            self.logins += 1
            scripted = self._scripted()
            username = credentials.username
            if scripted is not None:
                return self._issued(scripted, self._open_family(username))
            now = self._server_now()
            self._refuse_if_locked(username, now)
            if self.users.get(username) != credentials.password:
                self._count_failure(username, now)
                raise InvalidCredentials("the server refused the username or password")
            self._failures.pop(username, None)
            return self._grant(self._open_family(username))

    def refresh(self, refresh_token: str) -> Grant:
        self._wait_gate()
        with self._lock:
            self.refreshes += 1
            family = self._family_of.get(refresh_token)
            if refresh_token in self._reached:
                # Presented before, and it got here: whatever the answer was (rotated,
                # refused, lost), a client must never send it again.
                self.replays += 1
                if family is not None:
                    self._revoked[family] = "replay_attack"
                raise RefreshRejected("Token replay attack detected")
            try:
                scripted = self._scripted()
            except CidxAuthError as error:
                if not (isinstance(error, ServerUnavailable) and not error.reached):
                    self._reached.add(refresh_token)
                raise
            if scripted is not None:
                self._reached.add(refresh_token)
                if family is None:
                    family = self._open_family(next(iter(self.users), "alice"))
                return self._issued(scripted, family)
            if family is None:
                raise RefreshRejected("Invalid refresh token")
            self._reached.add(refresh_token)
            if family in self._revoked:
                raise RefreshRejected(f"Refresh token revoked due to {self._revoked[family]}")
            if self._server_now() >= self._expires_at[refresh_token]:
                raise RefreshRejected("Refresh token has expired")
            grant = self._grant(family)
            if self.lose_answers:
                self.lose_answers -= 1
                raise ServerUnavailable("read timed out: the answer was lost")
            return grant

    def _wait_gate(self) -> None:
        if self.gate is not None:
            self.at_gate.set()
            self.gate.wait(timeout=30)

    def _scripted(self) -> Grant | None:
        if not self._script:
            return None
        item = self._script.popleft()
        if isinstance(item, Grant):
            return item
        raise item

    def _server_now(self) -> float:
        return self.clock.now() + self.server_offset

    def _refuse_if_locked(self, username: str, now: float) -> None:
        until = self._locked_until.get(username)
        if until is None or now >= until:
            return
        left = max(1, int(until - now))
        raise AccountLocked(
            "the server locked this account after too many failed logins "
            f"(it says: try again in {left} seconds)",
            retry_at=self.clock.now() + left,
        )

    def _count_failure(self, username: str, now: float) -> None:
        recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_WINDOW]
        recent.append(now)
        if len(recent) >= LOCKOUT_THRESHOLD:
            self._locked_until[username] = now + LOCKOUT_SECONDS
            recent = []
        self._failures[username] = recent

    def _open_family(self, username: str) -> int:
        family = len(self._owner)
        self._owner[family] = username
        return family

    def _issue(self, refresh: str, family: int) -> None:
        # A token issued again (a test injecting the same one twice) is a new token.
        self._reached.discard(refresh)
        self._family_of[refresh] = family
        self._expires_at[refresh] = self._server_now() + self.refresh_lifetime

    def _issued(self, grant: Grant, family: int) -> Grant:
        if grant.refresh_token is not None:
            self._issue(grant.refresh_token, family)
        return grant

    def _grant(self, family: int) -> Grant:
        server_now = self._server_now()
        token = make_jwt(
            {
                "username": self._owner[family],
                "role": "normal_user",
                "iat": server_now,
                "exp": server_now + self.lifetime,
                "jti": str(uuid.uuid4()),
            },
            alg=self.alg,
        )
        refresh = secrets.token_urlsafe(48)
        self._issue(refresh, family)
        return Grant(token, refresh, None, server_now if self.send_date else None)


@dataclass
class MemoryPorts:
    """Every port the container needs, in memory, around one fake clock and one scripted
    server: ``Container(**ports.wiring())``, and the fakes stay at hand to drive."""

    clock: FakeClock
    gateway: ScriptedGateway
    token_store: MemoryTokenStore = field(default_factory=MemoryTokenStore)
    credential_store: MemoryCredentialStore = field(default_factory=MemoryCredentialStore)
    state_store: MemoryStateStore = field(default_factory=MemoryStateStore)

    def wiring(self) -> dict[str, object]:
        """The ports by the container's names for them."""
        return {"clock": self.clock, "gateway": self.gateway, "token_store": self.token_store,
                "credential_store": self.credential_store, "state_store": self.state_store}


def memory_ports(users: dict[str, str] | None = None, login_as: str | None = "alice",
                 lifetime: float = 600.0) -> MemoryPorts:
    """The in-memory ports for a server that knows ``users``, with the credentials of
    ``login_as`` stored (None: nobody has logged in)."""
    users = users if users is not None else {"alice": "secret"}
    clock = FakeClock()
    stored = None if login_as is None else Credentials(login_as, users[login_as])
    return MemoryPorts(clock, ScriptedGateway(clock, users, lifetime),
                       credential_store=MemoryCredentialStore(stored))
