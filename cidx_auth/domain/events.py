"""What the token provider tells the outside world, and which of it ``status`` counts.

Events carry no secret: a token is named by its fingerprint, a user by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(enum.Enum):
    ACQUIRED = "acquired"
    """A valid token was taken from the store (another process had refreshed it)."""
    LOGGED_IN = "logged_in"
    REFRESHED = "refreshed"
    RELOGGED_IN = "relogged_in"
    """Refresh was impossible or refused, so stored credentials logged in again."""
    REFRESH_REFUSED = "refresh_refused"
    REFRESH_FAILED = "refresh_failed"
    """A refresh could not reach the server; a still-valid token stays in use."""
    REPLAY_REPORTED = "replay_reported"
    """The server refused a refresh as a replay: that refresh token was presented twice
    (by someone), and the server revoked the session. The user should know."""
    REFRESH_ABANDONED = "refresh_abandoned"
    """The stored session's refresh was left in flight (its sender died, was interrupted
    or lost the answer), or its intent could not be recorded: log in, never refresh."""
    LOGIN_REFUSED = "login_refused"
    RETRY = "retry"
    BREAKER = "breaker"
    STORAGE_DEGRADED = "storage_degraded"
    LOCK_TIMEOUT = "lock_timeout"
    INVALIDATED = "invalidated"


@dataclass(frozen=True, slots=True)
class AuthEvent:
    kind: EventKind
    at: float
    detail: str = ""
    fingerprint: str | None = None


COUNTED = {
    EventKind.LOGGED_IN: "logins",
    EventKind.REFRESHED: "refreshes",
    EventKind.RELOGGED_IN: "relogins",
    EventKind.REFRESH_REFUSED: "failures",
    EventKind.REFRESH_FAILED: "failures",
    EventKind.LOGIN_REFUSED: "failures",
}
"""Which events the persistent counters (shown by ``cidx-auth status``) count."""



MAX_SINK_ERROR = 200
"""How much of a failing sink's error is shown: its first line, cut here."""


def sink_failure(event: AuthEvent, sink: object, error: BaseException) -> str:
    """The one log line for a sink that raised on ``event``: what was not recorded, by
    which sink, and why (the error's type and first line). Never a traceback: reporting
    an event is not worth a command, and the user cannot act on a stack."""
    try:
        text = str(error)
    except Exception:  # a __str__ that fails still leaves the type to name
        text = ""
    lines = text.strip().splitlines()
    why = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return (f"could not record the event {event.kind.value} ({type(sink).__name__}): "
            f"{why[:MAX_SINK_ERROR]}")
