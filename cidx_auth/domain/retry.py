"""How often and how long to wait before trying a failed call again (errata #10, #11).

Three attempts in all, exponential backoff with *full jitter* (a uniform draw between
0 and ``min(cap, base * factor ** n)``) so that many clients do not retry in step,
capped at 60 s. A ``Retry-After`` from the server replaces the draw; one longer than
the cap is not waited out: the call fails at once, telling the user when to come back.
Only transport trouble is retried: a refused login would lock the account.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cidx_auth.domain.errors import CidxAuthError, RateLimited, ServerUnavailable

AUTH_DEADLINE = 30.0
"""D: the longest one auth request (a login or a refresh) may take, connect to last byte.
The gateway enforces it; the renewal's lock wait (2D + 5 s) is derived from it."""
API_DEADLINE = 60.0
"""The longest one API call may take, connect to last byte; it is not retried after."""
MAX_SERVER_WAIT = 24 * 3600.0
"""No server makes us wait longer than a day: a larger ``Retry-After`` (or lockout) means
a day. The breaker applies its own, shorter bound to how long it stays open."""
MAX_ATTEMPTS = 3
BACKOFF_BASE = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = MAX_ATTEMPTS
    base: float = BACKOFF_BASE
    factor: float = BACKOFF_FACTOR
    cap: float = BACKOFF_MAX

    def backoff(self, failures: int, draw: float) -> float:
        """Full-jitter delay after ``failures`` failed attempts; ``draw`` is in [0, 1)."""
        return draw * min(self.cap, self.base * self.factor ** max(0, failures - 1))

    def delay(self, error: CidxAuthError, failures: int, draw: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not is_retryable(error) or failures >= self.attempts:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= self.cap else None
        return self.backoff(failures, draw)


def is_retryable(error: CidxAuthError) -> bool:
    """Transport trouble is worth another attempt; a refusal never is."""
    return isinstance(error, ServerUnavailable | RateLimited)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``,
    at most :data:`MAX_SERVER_WAIT` (``1e300`` is a day, not an overflow later)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        import email.utils  # rare, and heavy (socket, random): not on every command's path

        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return clamp_wait(seconds)


def clamp_wait(seconds: float) -> float:
    """A wait the server asked for, between 0 and :data:`MAX_SERVER_WAIT`."""
    return min(max(0.0, seconds), MAX_SERVER_WAIT)
