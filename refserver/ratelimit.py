"""The server's three brakes on repeated attempts.

1. A per-username token bucket on login (10 attempts, one back every 6 s).
2. A per-username lockout: 5 failed logins within 15 minutes lock the name
   for 15 minutes, whatever password comes next. The bucket is consulted
   first, so a hammering client sees the bucket's message, not the lockout's.
3. A global refresh-failure limiter: 10 failed refreshes within 5 minutes
   turn further *failed* refreshes into 429s for 5 minutes. Good refreshes
   still pass, which is why the limiter is asked only after a failure.

All of them take `now` as an argument; none reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from refserver.config import (
    LOCKOUT_SECONDS,
    LOCKOUT_THRESHOLD,
    LOCKOUT_WINDOW_SECONDS,
    LOGIN_BUCKET_CAPACITY,
    LOGIN_BUCKET_REFILL_SECONDS,
    REFRESH_BLOCK_SECONDS,
    REFRESH_FAILURE_LIMIT,
    REFRESH_FAILURE_WINDOW_SECONDS,
)

BUCKET_DETAIL = "Too many login attempts. Please try again later."
REFRESH_LIMIT_DETAIL = "Too many failed attempts. Try again in 5 minutes."


def lockout_detail(seconds: int) -> str:
    """The lockout message, which carries its own countdown."""
    return f"account_locked: Too many failed attempts. Try again in {seconds} seconds."


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a login attempt is turned away before its password is checked."""

    detail: str
    retry_after: int


@dataclass(slots=True)
class TokenBucket:
    """A bucket that starts full and refills continuously."""

    capacity: float
    refill_seconds: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Spend one token; returns 0 on success, else seconds until one is back."""
        # max(0, ...): a clock shifted backwards must not drain the bucket.
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed / self.refill_seconds)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * self.refill_seconds


class LoginGuard:
    """Login bucket and lockout, keyed by the username as typed."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def admit(self, username: str, now: float) -> Refusal | None:
        """Charge one attempt to `username`; a `Refusal` means answer 429 now."""
        bucket = self._buckets.get(username)
        if bucket is None:
            bucket = TokenBucket(LOGIN_BUCKET_CAPACITY, LOGIN_BUCKET_REFILL_SECONDS,
                                 LOGIN_BUCKET_CAPACITY, now)
            self._buckets[username] = bucket
        wait = bucket.take(now)
        if wait > 0:
            return Refusal(BUCKET_DETAIL, max(1, math.ceil(wait)))
        until = self._locked_until.get(username)
        if until is not None and now < until:
            remaining = max(1, int(until - now))
            return Refusal(lockout_detail(remaining), remaining)
        return None

    def record_failure(self, username: str, now: float) -> None:
        """Count a wrong password; the threshold-reaching failure starts a lockout."""
        recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_WINDOW_SECONDS]
        recent.append(now)
        if len(recent) >= LOCKOUT_THRESHOLD:
            self._locked_until[username] = now + LOCKOUT_SECONDS
            recent = []
        self._failures[username] = recent

    def record_success(self, username: str) -> None:
        """A right password wipes the slate for that name."""
        self._failures.pop(username, None)

    def is_locked(self, username: str, now: float) -> bool:
        """Whether `username` is inside a lockout at `now`."""
        return now < self._locked_until.get(username, -math.inf)


class RefreshLimiter:
    """Counts failed refreshes across all users and blocks further failures."""

    def __init__(self) -> None:
        self._failures: list[float] = []
        self._blocked_until = -math.inf

    def blocked(self, now: float) -> bool:
        """Whether a failed refresh at `now` must be answered 429."""
        return now < self._blocked_until

    def record_failure(self, now: float) -> None:
        """Count one failure; the limit-reaching one starts the block."""
        window_start = now - REFRESH_FAILURE_WINDOW_SECONDS
        self._failures = [t for t in self._failures if t > window_start]
        self._failures.append(now)
        if len(self._failures) >= REFRESH_FAILURE_LIMIT:
            self._blocked_until = now + REFRESH_BLOCK_SECONDS
            self._failures = []
