"""The token renewal: plain blocking code over the ports, with its lock in plain sight.

``Renewal.acquire`` runs when the in-memory token is stale, expired, missing or refused::

    read the store, without the lock      fresh (another process renewed)?  -> use it
    a still-valid token is the fallback   with one, never wait for the lock
    with the token lock:                  (nothing under it sleeps)
        read the store again              fresh?                            -> use it
        record the intent, then refresh   the stored refresh token, sent once
        spent, refused, or no intent?     -> log in with the stored credentials
    transport trouble                     let the lock go, back off, try again

**The ownership rule.** The stored refresh token is sent only by a process that holds
the lock *and* has durably recorded that it is about to send it. The record (the
write-ahead intent) is the stored session itself, saved without its refresh token and
marked ``refresh_in_flight`` before the request leaves. Whoever reads the store after
that point, including the next process after this one was killed, interrupted or lost
the answer, finds no refresh token to present, and logs in. Saving the rotated session
clears the mark. A process that cannot take the lock, or cannot write the record, logs
in instead: a new token family, which revokes nothing.

**Memory never holds a refresh token.** Every session handed back has none. A failed
save cannot always say whether it wrote (a Redis reply lost after its script ran), so a
refresh token meant for the store is never this process's alone to send again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from cidx_auth.domain.breaker import Admission
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AccountLocked,
    AuthenticationError,
    CidxAuthError,
    CircuitOpen,
    InvalidCredentials,
    LockTimeout,
    LockUnavailable,
    LoggedOut,
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
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant, Session, parse_access_token
from cidx_auth.ports import AuthGateway, Clock, CredentialStore, TokenStore
from cidx_auth.service.breaker import CircuitBreaker

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``acquire`` settled on; ``renewal_failed`` asks the provider to back off."""

    session: Session
    renewal_failed: bool = False


class Renewal:
    """Obtains a new session when the current one will not do; one call at a time per
    process (the provider's single flight), any number of processes at once."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: TokenStore,
        credentials: CredentialStore,
        gateway: AuthGateway,
        breaker: CircuitBreaker,
        emit: Callable[[AuthEvent], None],
        degrade: Callable[[str], None],
        rules: Rules,
        rng: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._store = store
        self._credentials = credentials
        self._gateway = gateway
        self._breaker = breaker
        self._emit_event = emit
        self._degrade = degrade
        self._rules = rules
        self._rng = rng

    def acquire(self, current: Session | None, rejected: frozenset[str]) -> Outcome:
        """A usable session (without its refresh token), or the error why there is none."""
        now = self._clock.now()
        # Writes are atomic, so reading without the lock is safe: when another process
        # has already renewed, this costs no lock at all.
        stored = self._read()
        if stored is not None and self._fresh(stored, rejected, now):
            return Outcome(self._adopted(stored, current, now))
        fallback = self._best_usable((current, stored), rejected, now)
        wait = 0.0 if fallback is not None else self._rules.lock_wait
        try:
            session = self._retrying(
                lambda: self._renew(current, rejected, wait, fallback is not None),
                patient=fallback is None,
            )
        except LockTimeout:
            if fallback is None:
                raise
            self._emit(EventKind.LOCK_TIMEOUT, now, "another process is renewing", fallback)
            return Outcome(_bare(fallback))
        except CidxAuthError as error:
            if fallback is None or isinstance(error, LoggedOut):
                raise  # a logout (here or elsewhere) ends the token held in memory too
            self._emit(EventKind.REFRESH_FAILED, now, f"{type(error).__name__}: {error}", fallback)
            return Outcome(_bare(fallback), renewal_failed=True)
        return Outcome(session)

    def first_login(self, credentials: Credentials) -> Session:
        """``cidx-auth login``: verify the credentials, then store them with the session."""

        def attempt() -> Session:
            with self._token_lock(self._rules.lock_wait), _advising(FIRST_LOGIN_AFTER_LOCK):
                session = self._log_in(credentials, EventKind.LOGGED_IN)
                self._credentials.save(credentials)
                return session

        return self._retrying(attempt, patient=True)

    def log_out(self) -> None:
        """Remove the stored session and the stored credentials (decisions.md, "Logout"):
        nothing is left to renew with, so no process renews until the next ``login``.
        Under the token lock, so a renewal running elsewhere finishes first (its new
        session is removed with the rest) or starts after and finds nothing."""
        with self._token_lock(self._rules.lock_wait):
            self._credentials.clear()  # first: it is what logs in, if the rest fails
            self._store.clear()

    def record_refusal(self, raw: str) -> None:
        """The server refused ``raw`` (a 401): mark it so in the store, so that no process
        hands it out again (the token fast path included). Best effort and never waiting:
        a renewal that holds the lock is replacing the session anyway."""
        try:
            with self._store.lock(0.0):
                stored = self._store.load()
                if stored is not None and stored.token.raw == raw and not stored.refused:
                    self._store.save(replace(stored, refused=True))
        except (LockTimeout, StorageError):
            pass  # memory knows; the next renewal replaces the stored session

    # ---- under the lock ---------------------------------------------------------------

    def _renew(
        self, current: Session | None, rejected: frozenset[str], wait: float, valid: bool
    ) -> Session:
        """One attempt: re-read under the lock, then refresh if this process owns the
        stored refresh token, else log in. ``valid``: the caller still has a valid token."""
        with self._token_lock(wait) as held:
            now = self._clock.now()
            stored, read = self._read_known()
            if stored is not None and self._fresh(stored, rejected, now):
                return self._adopted(stored, current, now)
            if not held and valid:
                # Without the lock the renewal would be a login; a crowd of them runs into
                # the server's login limiter. The valid token will do until it expires.
                raise LockUnavailable("the token lock is unavailable; keeping the valid token")
            if held and stored is not None and stored.refresh_token:
                renewed = self._refresh(stored)
                if renewed is not None:
                    return renewed
            elif stored is not None and stored.refresh_in_flight:
                self._emit(
                    EventKind.REFRESH_ABANDONED, now,
                    "an earlier refresh never stored its answer; logging in", stored,
                )
            return self._relog_in(stored, logged_out=read and stored is None)

    @contextlib.contextmanager
    def _token_lock(self, wait: float) -> Iterator[bool]:
        """Hold the token lock for the block (True), or go on without it (False) when no
        lock can be had here at all; a wait that runs out raises :class:`LockTimeout`."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._store.lock(wait))
                held = True
            except LockUnavailable as error:
                self._degrade(f"token lock unavailable ({error})")
                held = False
            except LockTimeout as error:
                remedy = error.remedy or "try again, or look for a stuck cidx process"
                timeout = LockTimeout(
                    f"another cidx process has been renewing the token for {wait:.0f} s; "
                    f"{remedy}"
                )
                timeout.remedy = error.remedy
                raise timeout from None
            yield held

    def _refresh(self, stored: Session) -> Session | None:
        """Present the stored refresh token, once. None: it is spent or refused, and
        the intent stays on record so nobody presents it again; log in instead."""
        token = stored.refresh_token
        assert token is not None
        if not self._record_intent(stored):
            return None
        try:
            grant = self._call(lambda: self._gateway.refresh(token))
        except CidxAuthError as error:
            if _certainly_unsent(error):
                self._save_quietly(stored)  # it never left: the token is good, put it back
                raise
            now = self._clock.now()
            if isinstance(error, RefreshRejected | RateLimited):
                # The refresh limiter answers 429 only to refused refreshes.
                self._emit(EventKind.REFRESH_REFUSED, now, str(error), stored)
                if _reports_replay(error):
                    self._emit(EventKind.REPLAY_REPORTED, now, REPLAY_NEWS, stored)
                return None
            if isinstance(error, ServerUnavailable):
                self._emit(EventKind.REFRESH_FAILED, now, f"answer lost: {error}", stored)
                return None
            raise
        try:
            return self._adopt(grant, stored.username, EventKind.REFRESHED)
        except TokenRejected:
            # The server rotated whatever we think of its new token: keep its refresh
            # token, since the one just sent is spent.
            self._save_quietly(replace(stored, refresh_token=grant.refresh_token))
            raise

    def _record_intent(self, stored: Session) -> bool:
        """Durably mark the stored refresh token as on its way; False if that failed."""
        try:
            self._store.save(replace(stored, refresh_token=None, refresh_in_flight=True))
        except StorageError as error:
            self._degrade(f"refresh not recorded before sending ({error})")
            self._emit(
                EventKind.REFRESH_ABANDONED, self._clock.now(),
                "the refresh could not be recorded first; logging in", stored,
            )
            return False
        return True

    def _relog_in(self, stored: Session | None, *, logged_out: bool) -> Session:
        """Log in with the stored credentials; forget them if the server refuses them.
        ``logged_out``: the store was read and holds no session; with no credentials
        either, that is a logout (here or elsewhere), which ends a token held in memory
        too. A store that could not be read proves nothing of the kind."""
        credentials = self._credentials.load()
        if credentials is None and logged_out:
            raise LoggedOut("not logged in (nothing stored for this project: logged out): "
                            "run `cidx-auth login`")
        if credentials is None:
            raise NotLoggedIn("no stored credentials for this project: run `cidx-auth login`")
        kind = EventKind.LOGGED_IN if stored is None else EventKind.RELOGGED_IN
        try:
            with _advising(RELOGIN_AFTER_LOCK):
                return self._log_in(credentials, kind)
        except (InvalidCredentials, PasswordExpired, MfaRequired) as error:
            # Every later command would be refused too, and 5 refusals lock the account:
            # forget them, so later commands stop at "run cidx-auth login" at once.
            try:
                self._credentials.clear()
                after = "the stored password has been forgotten"
            except StorageError:
                after = ("the stored password could not be removed, so the next command "
                         "sends it again: run `cidx-auth login` to replace it")
            raise type(error)(f"{error} ({after})") from None

    def _log_in(self, credentials: Credentials, kind: EventKind) -> Session:
        """Log in once; a refusal is reported and never retried (errata #11)."""
        try:
            grant = self._call(lambda: self._gateway.login(credentials))
        except AuthenticationError as error:
            now = self._clock.now()
            self._emit(EventKind.LOGIN_REFUSED, now, f"user {credentials.username}: {error}")
            raise
        return self._adopt(grant, credentials.username, kind)

    def _adopt(self, grant: Grant, username: str | None, kind: EventKind) -> Session:
        """Check a grant against the rules, store it, and return it for memory."""
        now = self._clock.now()
        date_offset = grant.server_date - now if grant.server_date is not None else 0.0
        # A token "issued in the future" is refused only if neither our clock nor the
        # server's Date header vouches for its iat (a proxy may write its own Date).
        token = parse_access_token(
            grant.access_token, self._rules.tokens, now + max(0.0, date_offset), grant.expires_in
        )
        # The token's own issue time is the server's clock to the microsecond: the best
        # estimate of the offset. The Date header (whole seconds) is the fallback.
        offset = token.iat - now if token.iat is not None else date_offset
        session = Session(token, grant.refresh_token, offset, username or token.username)
        try:
            self._store.save(session)  # clears the intent mark
        except StorageError as error:
            # The store keeps what it had: the intent mark after a refresh (the next
            # process logs in), an unspent session after a login. Nothing spent is left.
            self._degrade(f"token not saved ({type(error).__name__}: {error})")
        self._emit(kind, now, f"user {session.username or '?'}", session)
        return _bare(session)

    # ---- the network, the store, and the rules -----------------------------------------

    def _call(self, send: Callable[[], Grant]) -> Grant:
        """One request through the breaker (an interrupted probe gives its turn back)."""
        admission = self._breaker.admit()
        try:
            grant = send()
        except CidxAuthError as error:
            retry_after = error.retry_after if isinstance(error, TransportError) else None
            self._breaker.record(isinstance(error, ServerUnavailable), retry_after)
            raise
        except BaseException:
            if admission is Admission.PROBE:
                self._breaker.abandon_probe()
            raise
        self._breaker.record(False)
        return grant

    def _retrying(self, attempt: Callable[[], T], *, patient: bool) -> T:
        """Run ``attempt``; after transport trouble wait (outside the lock, which each
        attempt takes and lets go) and try again, if the retry policy allows."""
        failures = 0
        while True:
            try:
                return attempt()
            except (ServerUnavailable, RateLimited) as error:
                failures += 1
                delay = self._rules.retry.delay(error, failures, self._rng())
                if not patient or delay is None:
                    raise
                detail = f"{type(error).__name__}, next try in {delay:.1f} s"
                self._emit(EventKind.RETRY, self._clock.now(), detail)
                self._clock.sleep(delay)

    def _read(self) -> Session | None:
        return self._read_known()[0]

    def _read_known(self) -> tuple[Session | None, bool]:
        """The stored session, and whether the store could be read at all."""
        try:
            return self._store.load(), True
        except StorageError as error:
            self._degrade(f"token not loaded ({type(error).__name__}: {error})")
            return None, False

    def _save_quietly(self, session: Session) -> None:
        try:
            self._store.save(session)
        except StorageError as error:
            self._degrade(f"token not saved ({type(error).__name__}: {error})")

    def _adopted(self, session: Session, current: Session | None, now: float) -> Session:
        if current is None or session.token.raw != current.token.raw:
            self._emit(EventKind.ACQUIRED, now, "token taken from the store", session)
        return _bare(session)

    def _fresh(self, session: Session, rejected: frozenset[str], now: float) -> bool:
        return self._judged(session, rejected, now) is TokenState.FRESH

    def _best_usable(
        self, sessions: tuple[Session | None, ...], rejected: frozenset[str], now: float
    ) -> Session | None:
        """The still-valid session that lasts longest, if any."""
        usable = [
            session for session in sessions
            if session is not None and self._judged(session, rejected, now).usable
        ]
        return max(usable, key=lambda s: s.token.exp - s.clock_offset, default=None)

    def _judged(self, session: Session, rejected: frozenset[str], now: float) -> TokenState:
        """The rules' verdict, and refused as well when this process saw a 401 for it."""
        if session.token.fingerprint in rejected:
            return TokenState.REFUSED
        return self._rules.judge(session, now)

    def _emit(
        self, kind: EventKind, now: float, detail: str, session: Session | None = None
    ) -> None:
        fingerprint = session.token.fingerprint if session is not None else None
        self._emit_event(AuthEvent(kind, now, detail, fingerprint))


REPLAY_NEWS = (
    "the server says this session's refresh token was used twice and revoked the session "
    "(logged in again); if no other cidx process explains it, the token may have been copied"
)


FIRST_LOGIN_AFTER_LOCK = "then run `cidx-auth login` again"
RELOGIN_AFTER_LOCK = ("the stored password is kept, and the first command after that "
                      "logs in by itself")


@contextlib.contextmanager
def _advising(after_lock: str) -> Iterator[None]:
    """Add to a lockout what to do once it ends. The server locks an account before it
    checks the password, so a lockout says nothing against the stored one."""
    try:
        yield
    except AccountLocked as locked:
        raise AccountLocked(f"{locked}; {after_lock}", locked.retry_at) from None


def _reports_replay(error: CidxAuthError) -> bool:
    """The server's words for a replayed refresh token, or for a family revoked for one."""
    text = str(error).lower()
    return "replay" in text


def _certainly_unsent(error: CidxAuthError) -> bool:
    """The request never reached the server: the breaker held it back, or the
    connection was refused before a byte went out."""
    if isinstance(error, CircuitOpen):
        return True
    return isinstance(error, ServerUnavailable) and not error.reached


def _bare(session: Session) -> Session:
    """The session as memory keeps it: without a refresh token (see the module doc)."""
    if session.refresh_token is None:
        return session
    return replace(session, refresh_token=None)
