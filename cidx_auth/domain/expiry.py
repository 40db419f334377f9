"""When a token is fresh, due for refresh, or no longer safe to send.

Errata #1: the skew protects the client. A token is sent only while
``server_now + skew < exp``; the sketch's ``now > exp + 30`` sent tokens for 30 s
after they had died. ``server_now`` is the client clock plus the estimated offset to
the server's clock, so a client whose clock is minutes off still judges correctly.

The constants fit the real server's 10-minute tokens. A token that lives only a few
seconds (a test server, the demo) would be "expired" from birth under a 30 s skew, so
both margins shrink with the token's lifetime: the skew to a tenth of it, the refresh
window to half of it. For a 10-minute token that changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cidx_auth.domain.token import AccessToken, Session, TokenRules

CLOCK_SKEW = 30.0
REFRESH_WINDOW = 300.0


class TokenState(enum.Enum):
    """How usable a token is at a given moment."""

    FRESH = "fresh"
    STALE = "stale"
    """Still valid, but inside the refresh window: one caller should refresh it."""
    EXPIRED = "expired"
    """Not safe to send: it expires within the skew, or already has."""
    REFUSED = "refused"
    """The server answered 401 to it: nobody hands it out again."""
    NOT_ALLOWED = "not_allowed"
    """Signed with an algorithm outside the project's pin: never sent, however fresh."""

    @property
    def usable(self) -> bool:
        """Whether a token in this state may still be sent (fresh or stale)."""
        return self in (TokenState.FRESH, TokenState.STALE)


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """The skew and refresh-window rules, as pure functions of time."""

    skew: float = CLOCK_SKEW
    refresh_window: float = REFRESH_WINDOW

    def margins(self, token: AccessToken) -> tuple[float, float]:
        """The (skew, refresh window) that apply to this token's lifetime."""
        lifetime = token.lifetime
        if lifetime is None:
            return self.skew, max(self.skew, self.refresh_window)
        skew = min(self.skew, lifetime / 10)
        return skew, max(skew, min(self.refresh_window, lifetime / 2))

    def deadlines(self, token: AccessToken, clock_offset: float = 0.0) -> tuple[float, float]:
        """(stale_at, expired_at) on the *client's* clock, for a cheap comparison."""
        skew, window = self.margins(token)
        local_exp = token.exp - clock_offset
        return local_exp - window, local_exp - skew

    def state(self, token: AccessToken, now: float, clock_offset: float = 0.0) -> TokenState:
        """Classify ``token`` at client time ``now`` given ``server - client`` offset."""
        stale_at, expired_at = self.deadlines(token, clock_offset)
        if now >= expired_at:
            return TokenState.EXPIRED
        if now >= stale_at:
            return TokenState.STALE
        return TokenState.FRESH

    def seconds_left(self, token: AccessToken, now: float, clock_offset: float = 0.0) -> float:
        """Seconds until the token stops being safe to send (never negative)."""
        return max(0.0, self.deadlines(token, clock_offset)[1] - now)


def judge(session: Session, now: float, expiry: ExpiryPolicy, tokens: TokenRules) -> TokenState:
    """How usable ``session`` is at client time ``now`` under a project's rules: refused
    by the server, outside the algorithm pin, or else as its expiry says."""
    if session.refused:
        return TokenState.REFUSED
    if session.token.alg not in tokens.allowed_algorithms:
        return TokenState.NOT_ALLOWED
    return expiry.state(session.token, now, session.clock_offset)
