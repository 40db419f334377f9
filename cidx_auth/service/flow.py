"""The token lifecycle decisions, written once as sans-IO generators.

``acquire`` runs when the in-memory token is stale, expired, missing or rejected::

    take the cross-process lock            (timed out: keep a still-valid token, else fail)
    reload the stored session              (another process may have refreshed)
    fresh and not rejected?     -> use it
    refresh with its refresh token         (rotated token saved before the lock is let go)
    refused?                    -> log in again with stored credentials
    server unreachable but the token still valid?  -> keep it, say so, try later

Every network call goes through ``network``: the breaker admits it, transport
trouble is retried with full-jitter backoff, a refusal is never retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, cast

from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AuthenticationError,
    CidxAuthError,
    InvalidCredentials,
    LockTimeout,
    MfaRequired,
    NotLoggedIn,
    PasswordExpired,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
    StorageError,
    TokenRejected,
    TransportError,
)
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.expiry import ExpiryPolicy, TokenState
from cidx_auth.domain.retry import RetryPolicy
from cidx_auth.domain.token import Grant, Session, TokenRules, parse_access_token
from cidx_auth.service import effects as fx

Flow = Generator[fx.Effect, Any, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``acquire`` settled on; ``renewal_failed`` asks the provider to back off."""

    session: Session
    renewal_failed: bool = False


@dataclass(frozen=True, slots=True)
class Rules:
    """The policies a flow applies; settings, not code."""

    expiry: ExpiryPolicy = ExpiryPolicy()
    tokens: TokenRules = TokenRules()
    retry: RetryPolicy = RetryPolicy()
    lock_timeout: float = 5.0


def emit(kind: EventKind, now: float, detail: str = "", token: Session | None = None) -> fx.Emit:
    fingerprint = token.token.fingerprint if token is not None else None
    return fx.Emit(AuthEvent(kind, now, detail, fingerprint))


def network(call: fx.Login | fx.Refresh, rules: Rules) -> Flow:
    """Perform ``call`` through the breaker with retries; returns its :class:`Grant`.

    A refresh is not idempotent: the server rotates on receipt, so sending the same
    refresh token again after it may have arrived (a timeout, a dropped answer, a 5xx)
    would be a replay, and the server revokes the family. It is retried only when it
    certainly never reached the server. A 429 is not retried either: the refresh
    limiter answers 429 only to refused refreshes.
    """
    failures = 0
    while True:
        yield fx.Admit()
        try:
            grant = yield call
        except CidxAuthError as error:
            retry_after = error.retry_after if isinstance(error, TransportError) else None
            yield fx.Record(isinstance(error, ServerUnavailable), retry_after)
            failures += 1
            delay = rules.retry.delay(error, failures, (yield fx.Draw()))
            if delay is None or (isinstance(call, fx.Refresh) and not _resendable(error)):
                raise
            now = yield fx.Now()
            yield emit(EventKind.RETRY, now, f"{type(error).__name__}, next try in {delay:.1f} s")
            yield fx.Sleep(delay)
            continue
        yield fx.Record(False)
        return cast(Grant, grant)


def _resendable(error: CidxAuthError) -> bool:
    return isinstance(error, ServerUnavailable) and not error.reached


def adopt(grant: Grant, username: str | None, kind: EventKind, rules: Rules) -> Flow:
    """Check a grant against the rules, store it, and return the new session."""
    now = yield fx.Now()
    date_offset = grant.server_date - now if grant.server_date is not None else 0.0
    # A token "issued in the future" is refused only if neither our clock nor the
    # server's Date header vouches for its iat (a proxy may write its own Date).
    token = parse_access_token(
        grant.access_token, rules.tokens, now + max(0.0, date_offset), grant.expires_in
    )
    # The token's own issue time is the server's clock to the microsecond: the best
    # estimate of the offset. The Date header (whole seconds) is the fallback.
    offset = token.iat - now if token.iat is not None else date_offset
    session = Session(token, grant.refresh_token, offset, username or token.username)
    yield from save(session)
    yield emit(kind, now, f"user {session.username or '?'}", session)
    return session


def save(session: Session) -> Flow:
    """Store ``session``; if that fails, at least take the old one away.

    The old stored session holds a refresh token the server has just rotated away: left
    in place, the next process would present it again and the server would revoke the
    family. An empty store only costs that process a login.
    """
    try:
        yield fx.SaveSession(session)
    except StorageError as error:
        yield fx.Degraded(f"token not saved ({type(error).__name__}: {error})")
        yield fx.DiscardSession()  # best effort; then memory alone carries the session


def load(current: Session | None, degraded: bool, repair: bool = True) -> Flow:
    """The session to work from: normally the stored one (another process may have
    refreshed), else the one in memory.

    Memory wins over the store only while storage is failing (``degraded``): then its
    refresh token has rotated past the stored one, which the server would take for a
    replay, and with ``repair`` (only under the lock) it is written back. With storage
    healthy, an empty store means someone logged out (or a damaged file was set aside):
    the in-memory session is not brought back.
    """
    try:
        stored = yield fx.LoadSession()
    except StorageError as error:
        yield fx.Degraded(f"token not loaded ({type(error).__name__}: {error})")
        return current
    if not degraded or current is None:
        return stored
    if stored is None or _issued(current) > _issued(stored):
        if repair:
            yield from save(current)
        return current
    return stored


def _issued(session: Session) -> float:
    """When the session's token was issued (its expiry when it does not say)."""
    token = session.token
    return token.iat if token.iat is not None else token.exp


def acquire(
    current: Session | None, rejected: frozenset[str], rules: Rules, degraded: bool = False
) -> Flow:
    """Return an :class:`Outcome` with a usable session, or raise why there is none.

    ``degraded`` says storage has failed in this process, so memory may be newer.
    """
    now = yield fx.Now()
    # Writes are atomic renames, so reading without the lock is safe: when another
    # process has already refreshed, this costs no lock at all.
    peeked = yield from load(current, degraded, repair=False)
    if _fresh(peeked, rejected, rules, now):
        return (yield from _adopted(peeked, current, now))
    held = yield fx.AcquireLock(rules.lock_timeout)
    if held is fx.LockResult.UNAVAILABLE:
        yield fx.Degraded("token lock unavailable")
    if held is fx.LockResult.TIMED_OUT:
        if _usable(current, rejected, rules, now):
            yield emit(EventKind.LOCK_TIMEOUT, now, "using the current token", current)
            return Outcome(cast(Session, current))
        raise LockTimeout(
            f"another cidx process held the token lock for over {rules.lock_timeout:.0f} s; "
            "try again, or look for a stuck cidx process"
        )
    session = yield from load(current, degraded)
    usable = _usable(session, rejected, rules, now)
    if _fresh(session, rejected, rules, now):
        return (yield from _adopted(session, current, now))
    try:
        return Outcome((yield from renew(session, rules)))
    except CidxAuthError as error:
        if not usable:
            raise
        yield emit(EventKind.REFRESH_FAILED, now, f"{type(error).__name__}: {error}", session)
        return Outcome(cast(Session, session), renewal_failed=True)


def renew(session: Session | None, rules: Rules) -> Flow:
    """Refresh ``session``; when that is refused, log in again with stored credentials."""
    if session is not None and session.refresh_token:
        try:
            return (yield from refresh(session, rules))
        except (RefreshRejected, RateLimited) as error:
            # The server's refresh limiter answers 429 only to failed refreshes, so a
            # 429 here means this refresh token is no good either: log in instead.
            now = yield fx.Now()
            yield emit(EventKind.REFRESH_REFUSED, now, str(error), session)
            # A refused refresh token stays refused: never send it again (each refusal
            # also feeds the server's refresh-failure limiter).
            yield from save(replace(session, refresh_token=None))
        except ServerUnavailable as error:
            if not error.reached:
                raise
            # The refresh may have arrived and rotated the token, with the answer lost:
            # the stored refresh token may be spent, and presenting it again would be a
            # replay. Forget it, and log in instead.
            now = yield fx.Now()
            yield emit(EventKind.REFRESH_FAILED, now, f"answer lost: {error}", session)
            yield from save(replace(session, refresh_token=None))
    credentials = yield fx.LoadCredentials()
    if credentials is None:
        raise NotLoggedIn("no stored credentials for this project: run `cidx-auth login`")
    kind = EventKind.LOGGED_IN if session is None else EventKind.RELOGGED_IN
    try:
        return (yield from log_in(credentials, kind, rules))
    except (InvalidCredentials, PasswordExpired, MfaRequired) as error:
        # Stored credentials the server refuses would be refused again by every later
        # command, and 5 refusals lock the account: forget them, so later commands stop
        # at "run cidx-auth login" without touching the network.
        with contextlib.suppress(StorageError):
            yield fx.ClearCredentials()
        raise type(error)(f"{error} (the stored password has been forgotten)") from None


def refresh(session: Session, rules: Rules) -> Flow:
    """One refresh. If the server's new token breaks our rules, its rotated refresh token
    is still kept: the one we sent is spent, and sending it again would be a replay."""
    assert session.refresh_token is not None
    grant = yield from network(fx.Refresh(session.refresh_token), rules)
    try:
        return (yield from adopt(grant, session.username, EventKind.REFRESHED, rules))
    except TokenRejected:
        yield from save(replace(session, refresh_token=grant.refresh_token))
        raise


def log_in(credentials: Credentials, kind: EventKind, rules: Rules) -> Flow:
    """Log in once; a refusal is reported and never retried (errata #11)."""
    try:
        grant = yield from network(fx.Login(credentials), rules)
    except AuthenticationError as error:
        now = yield fx.Now()
        yield emit(EventKind.LOGIN_REFUSED, now, f"user {credentials.username}: {error}")
        raise
    return (yield from adopt(grant, credentials.username, kind, rules))


def first_login(credentials: Credentials, rules: Rules) -> Flow:
    """``cidx-auth login``: verify the credentials, then store them with the session."""
    held = yield fx.AcquireLock(rules.lock_timeout)
    if held is fx.LockResult.TIMED_OUT:
        raise LockTimeout("another cidx process holds the token lock; try again")
    session = yield from log_in(credentials, EventKind.LOGGED_IN, rules)
    yield fx.SaveCredentials(credentials)
    return session


def log_out(forget: bool, rules: Rules) -> Flow:
    """Remove the stored session, and with ``forget`` the stored credentials too."""
    held = yield fx.AcquireLock(rules.lock_timeout)
    if held is fx.LockResult.TIMED_OUT:
        raise LockTimeout("another cidx process holds the token lock; try again")
    yield fx.ClearSession()
    if forget:
        yield fx.ClearCredentials()


def _adopted(session: Session, current: Session | None, now: float) -> Flow:
    if session is not current:
        yield emit(EventKind.ACQUIRED, now, "token taken from the store", session)
    return Outcome(session)


def _fresh(session: Session | None, rejected: frozenset[str], rules: Rules, now: float) -> bool:
    if session is None or session.token.fingerprint in rejected:
        return False
    return rules.expiry.state(session.token, now, session.clock_offset) is TokenState.FRESH


def _usable(session: Session | None, rejected: frozenset[str], rules: Rules, now: float) -> bool:
    if session is None or session.token.fingerprint in rejected:
        return False
    state = rules.expiry.state(session.token, now, session.clock_offset)
    return state is not TokenState.EXPIRED
