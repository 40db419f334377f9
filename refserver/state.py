"""Everything one server instance remembers, in one place.

Route handlers receive a `ServerState` instead of reaching for globals, so
each test's app is independent and `/_admin/reset` has one thing to reset.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

from refserver.clock import Clock, ServerClock
from refserver.config import ServerConfig
from refserver.faults import FaultBook
from refserver.ratelimit import LoginGuard, RefreshLimiter
from refserver.sessions import RefreshSessions
from refserver.stats import Stats
from refserver.tokens import AccessTokens


@dataclass(slots=True)
class ServerState:
    """The mutable state of one reference server."""

    config: ServerConfig
    clock: ServerClock
    tokens: AccessTokens
    sessions: RefreshSessions
    login_guard: LoginGuard
    refresh_limiter: RefreshLimiter
    stats: Stats
    faults: FaultBook
    accounts_created_at: str
    """When the users "signed up": the server's start, reported as `created_at`."""
    last_query: Any = None
    """The last `POST /api/query` body as sent (decoded JSON), for tests to compare."""

    @classmethod
    def build(cls, config: ServerConfig, clock: Clock = time.time) -> ServerState:
        """Fresh state for `config`, reading time from `clock`."""
        server_clock = ServerClock(clock)
        server_clock.offset = config.clock_offset
        return cls(
            config=config,
            clock=server_clock,
            tokens=AccessTokens(config.alg, config.token_lifetime, config.hs256_secret),
            sessions=RefreshSessions(config.refresh_lifetime),
            login_guard=LoginGuard(),
            refresh_limiter=RefreshLimiter(),
            stats=Stats(),
            faults=FaultBook(),
            accounts_created_at=server_clock.iso_now(),
        )

    def password_matches(self, username: str, password: str) -> bool:
        """Whether `password` is `username`'s, compared in constant time."""
        expected = self.config.users.get(username)
        if expected is None:
            return False
        return hmac.compare_digest(expected.encode(), password.encode())

    def reset(self) -> None:
        """Forget counters, limiters, lockouts, faults and the last query; sessions and
        tokens survive."""
        self.login_guard = LoginGuard()
        self.refresh_limiter = RefreshLimiter()
        # Reset in place: the fault middleware holds these two objects.
        self.stats.reset()
        self.faults.clear()
        self.last_query = None
