"""A project's rules: what the client accepts, when a token is used, how long it waits.

Settings, not code, gathered in one value so that every part of the client asks the
same questions of the same rules: the token fast path, ``status``, the stores and the
renewal judge a stored session with :meth:`Rules.judge`, and nowhere else. It lives in
the domain (standard library only), so the cold paths can use it without the services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cidx_auth.domain.expiry import ExpiryPolicy, TokenState, judge
from cidx_auth.domain.retry import AUTH_DEADLINE, RetryPolicy
from cidx_auth.domain.token import Session, TokenRules

LOCK_WAIT_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class Rules:
    """The policies a renewal applies; settings, not code."""

    expiry: ExpiryPolicy = ExpiryPolicy()
    tokens: TokenRules = TokenRules()
    retry: RetryPolicy = RetryPolicy()
    auth_deadline: float = AUTH_DEADLINE
    lock_wait_margin: float = LOCK_WAIT_MARGIN

    @classmethod
    def pinned(cls, algorithms: Iterable[str]) -> Rules:
        """A project's rules: the defaults, with tokens signed only by ``algorithms``
        (its settings' pin, or any JWS algorithm before the first login pins one)."""
        return cls(tokens=TokenRules(frozenset(algorithms)))

    @property
    def lock_wait(self) -> float:
        """How long a process with no usable token waits for the token lock: a holder
        sends at most one refresh and one login under it, each bounded by D."""
        return 2 * self.auth_deadline + self.lock_wait_margin

    def judge(self, session: Session, now: float) -> TokenState:
        """How usable a stored session is at client time ``now`` under these rules:
        fresh, stale, expired, refused or not allowed (:func:`~cidx_auth.domain.expiry.judge`)."""
        return judge(session, now, self.expiry, self.tokens)
