"""Counters that let tests and the demo see what the client really did.

"How many logins did that take?" is the question this project exists to
answer, so the server counts per user and in total, and `/_admin/stats`
publishes the lot.

`replays_since_start` is the one number `reset` does not zero: the test suite reads
it before and after every test to fail a test that caused a replay it did not
declare, and a test that resets the counters must not hide one that way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

USER_COUNTERS = ("logins", "failed_logins", "refreshes", "failed_refreshes", "replays")
"""Per-user counters, in the order they are reported."""

TOTAL_ONLY = ("rate_limited_logins", "locked_logins", "rate_limited_refreshes", "faults_fired",
              "held", "held_abandoned", "queries")
"""Counters with no meaningful owner, kept in the totals only."""


class Stats:
    """In-memory counters for one server instance."""

    def __init__(self) -> None:
        self._per_user: dict[str, Counter[str]] = {}
        self._totals: Counter[str] = Counter()
        self.requests = 0
        self.auth_401 = 0
        self.replays_since_start = 0
        """Every replay this server has seen; `reset` leaves it alone."""

    def reset(self) -> None:
        """Start counting from zero."""
        self._per_user.clear()
        self._totals.clear()
        self.requests = 0
        self.auth_401 = 0

    def bump(self, counter: str, username: str | None = None) -> None:
        """Add one to `counter`, for `username` too when the failure has an owner."""
        self._totals[counter] += 1
        if counter == "replays":
            self.replays_since_start += 1
        if username is not None and counter in USER_COUNTERS:
            self._per_user.setdefault(username, Counter())[counter] += 1

    def replays_seen(self) -> int:
        """Every replay since the server started (what the test suite's watch reads)."""
        return self.replays_since_start

    def total(self, counter: str) -> int:
        """The running total of one counter (0 for a name never bumped)."""
        return self._totals[counter]

    def snapshot(self) -> dict[str, Any]:
        """The JSON body of `GET /_admin/stats`."""
        users = {
            name: {key: counts[key] for key in USER_COUNTERS}
            for name, counts in sorted(self._per_user.items())
        }
        totals = {key: self._totals[key] for key in USER_COUNTERS + TOTAL_ONLY}
        return {"users": users, "totals": totals, "requests": self.requests,
                "auth_401": self.auth_401, "replays_since_start": self.replays_since_start}
