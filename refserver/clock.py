"""The server's sense of time.

Every rule in the server (token expiry, buckets, lockouts) asks this object
for "now" instead of reading the system clock, for two reasons: unit tests
inject a fake clock and never sleep, and skew tests shift a running server's
clock through `/_admin/clock` without touching the machine's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`."""


class ServerClock:
    """A base clock plus an adjustable offset."""

    def __init__(self, base: Clock = time.time) -> None:
        self._base = base
        self.offset = 0.0

    def now(self) -> float:
        """The server's current time in epoch seconds."""
        return self._base() + self.offset

    def iso_now(self) -> str:
        """The server's current time as an ISO 8601 string with a UTC offset."""
        return iso(self.now())


def iso(moment: float) -> str:
    """Format epoch seconds the way the real server writes timestamps."""
    return datetime.fromtimestamp(moment, UTC).isoformat()
