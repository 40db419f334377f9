"""The token provider: a valid access token for every caller, one renewal at a time.

``get_token`` and ``aget_token`` share the fast path (a fresh token in memory, no
lock, no I/O) and the slow path's decisions (:class:`Renewal`). What they add is
the single flight: at most one renewal runs in this process at a time, whoever
asked for it, a thread or an asyncio task (errata #4). The leader runs the renewal,
blocking code, on its own thread when it is a task; followers wait on a
:class:`concurrent.futures.Future`, which a thread can block on and a task can await
without blocking its loop. While the current token is still valid (stale),
followers do not wait at all: they keep using it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import LoggedOut, ServerUnavailable, TransportError
from cidx_auth.domain.events import AuthEvent, EventKind, sink_failure
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Session, fingerprint_of
from cidx_auth.ports import AuthGateway, Clock, CredentialStore, EventSink, TokenStore
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.renewal import Outcome, Renewal

logger = logging.getLogger(__name__)

RENEWAL_BACKOFF = 30.0
"""After a proactive renewal failed, keep the still-valid token this long before trying
again, so a dead server or a refused password is not hit on every call."""


@dataclass(frozen=True, slots=True)
class _Current:
    """The in-memory token with its deadlines on the client clock, read in one go."""

    session: Session
    raw: str = field(repr=False)
    stale_at: float
    expired_at: float


class _Flight:
    """One renewal in progress, and who leads it."""

    def __init__(self, is_async: bool) -> None:
        self.future: concurrent.futures.Future[Session] = concurrent.futures.Future()
        self.thread = threading.get_ident()
        self.is_async = is_async


class TokenProvider:
    """Hands out valid access tokens; refreshes, re-logs-in and stores as needed."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: TokenStore,
        credentials: CredentialStore,
        gateway: AuthGateway,
        breaker: CircuitBreaker,
        events: EventSink,
        rules: Rules = Rules(),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._events = events
        self._rules = rules
        self._renewal = Renewal(
            clock=clock, store=store, credentials=credentials, gateway=gateway,
            breaker=breaker, emit=self._emit, degrade=self._degrade, rules=rules, rng=rng,
        )
        self._current: _Current | None = None
        self._mutex = threading.Lock()
        self._flight: _Flight | None = None
        self._rejected: deque[str] = deque(maxlen=32)
        self._retry_renewal_at = 0.0
        self._degraded = False

    @property
    def session(self) -> Session | None:
        """The session in memory (it may be stale or expired); None before the first use.
        It never carries a refresh token: only the store does."""
        current = self._current
        return current.session if current is not None else None

    def get_token(self) -> str:
        """A token that is safe to send now. Blocks only when a renewal is unavoidable."""
        current = self._current
        if current is not None and self._clock.now() < current.stale_at:
            return current.raw
        flight, early = self._join(is_async=False)
        if early is not None:
            return early
        if flight is None:
            return self._lead_sync()
        if flight.thread == threading.get_ident():  # it would wait for itself forever
            if flight.is_async:
                raise RuntimeError(
                    "get_token() was called on an event loop thread while aget_token() "
                    "renews the token on it; use `await aget_token()` inside async code"
                )
            raise RuntimeError(
                "get_token() was called by the renewal it would wait for (from an event "
                "sink?); an event sink must not ask for a token"
            )
        return flight.future.result().token.raw

    async def aget_token(self) -> str:
        """The same as :meth:`get_token`, without blocking the event loop."""
        current = self._current
        if current is not None and self._clock.now() < current.stale_at:
            return current.raw
        flight, early = self._join(is_async=True)
        if early is not None:
            return early
        if flight is None:
            return await self._lead_async()
        return (await _wait(flight.future)).token.raw

    def invalidate(self, token: str) -> None:
        """The server refused ``token`` (401): drop it if it is still the current one,
        and mark it refused in the store if it is the stored one.

        Tokens are compared, not generations counted, so twenty callers reporting the
        same refused token cause one renewal, and a report about an older token than
        the current one changes nothing.
        """
        rejected = fingerprint_of(token)
        with self._mutex:
            first_report = rejected not in self._rejected
            if first_report:
                self._rejected.append(rejected)
            current = self._current
            if current is not None and current.raw == token:
                self._current = None
                self._emit(AuthEvent(EventKind.INVALIDATED, self._clock.now(), "", rejected))
        if first_report:  # so that other processes, and the token fast path, skip it too
            self._renewal.record_refusal(token)

    def state(self) -> TokenState | None:
        """How usable the in-memory token is now; None when there is none."""
        current = self._current
        if current is None:
            return None
        return self._rules.judge(current.session, self._clock.now())

    def login(self, credentials: Credentials) -> Session:
        """Log in with ``credentials``; on success store them and the new session."""
        session = self._renewal.first_login(credentials)
        with self._mutex:
            self._install(Outcome(session))
        return session

    def logout(self) -> None:
        """Forget the session here and in the store, and the stored credentials: no
        process renews until the next :meth:`login`; one that holds a token in memory
        stops using it at its next renewal (:class:`LoggedOut`)."""
        self._renewal.log_out()
        with self._mutex:
            self._current = None

    def _join(self, is_async: bool) -> tuple[_Flight | None, str | None]:
        """This caller's part: (a flight to follow, or None to lead; or an early answer)."""
        now = self._clock.now()
        with self._mutex:
            current = self._current
            if current is not None and now < current.stale_at:
                return None, current.raw  # renewed while this caller was deciding
            valid = current is not None and now < current.expired_at
            if valid and (self._flight is not None or now < self._retry_renewal_at):
                return None, current.raw  # type: ignore[union-attr]
            if self._flight is not None:
                return self._flight, None
            self._flight = _Flight(is_async)
            return None, None

    def _lead_sync(self) -> str:
        flight = self._flight
        assert flight is not None
        self._renew(flight)
        return flight.future.result().token.raw  # raises if the renewal failed

    async def _lead_async(self) -> str:
        flight = self._flight
        assert flight is not None
        # The renewal is blocking code (a lock, a few file or Redis reads, one request),
        # and rare: it runs on a thread of its own. A caller cancelled meanwhile (a
        # timeout around a query) leaves it running, so a grant the server has rotated
        # for is still stored, and the other waiters still get their answer.
        renewal = threading.Thread(
            target=self._renew, args=(flight,), name="cidx-auth-renewal", daemon=True
        )
        try:
            renewal.start()
        except BaseException as error:  # no thread to be had (interpreter shutting down)
            self._land(flight, error)
            raise
        return (await _wait(flight.future)).token.raw

    def _renew(self, flight: _Flight) -> None:
        """Run the renewal and land its result, however it ends; an interruption goes on
        up (the intent mark covers the store)."""
        current = self._current
        result: Outcome | Exception | None = None
        try:
            result = self._renewal.acquire(
                current.session if current is not None else None, frozenset(self._rejected)
            )
        except Exception as error:  # the followers get it from the future
            result = error
        finally:  # never leave a flight nobody will end
            self._land(flight, result if result is not None else _interrupted())

    def _land(self, flight: _Flight, result: Outcome | BaseException) -> None:
        """Install the outcome, end the flight, and release the followers."""
        with self._mutex:
            if isinstance(result, Outcome) and result.session.token.fingerprint in self._rejected:
                # Refused by the server while this renewal ran, which then failed and
                # fell back to it: never hand out a token known to be refused.
                result = ServerUnavailable(
                    "the server refused the token and a new one could not be obtained; "
                    "try again"
                )
            if isinstance(result, Outcome):
                self._install(result)
            elif isinstance(result, LoggedOut):  # logged out elsewhere: memory forgets too
                self._current = None
            self._flight = None
        if isinstance(result, Outcome):
            flight.future.set_result(result.session)
        else:  # an interrupted leader's followers get _interrupted(), not the signal
            flight.future.set_exception(result)

    def _install(self, outcome: Outcome) -> None:
        session = outcome.session
        stale_at, expired_at = self._rules.expiry.deadlines(session.token, session.clock_offset)
        self._current = _Current(session, session.token.raw, stale_at, expired_at)
        if outcome.renewal_failed:
            self._retry_renewal_at = self._clock.now() + RENEWAL_BACKOFF
        else:
            self._retry_renewal_at = 0.0

    def _emit(self, event: AuthEvent) -> None:
        try:
            self._events.emit(event)
        except Exception as error:  # an observer must never break token handling
            logger.warning("%s", sink_failure(event, self._events, error))

    def _degrade(self, detail: str) -> None:
        if not self._degraded:
            self._degraded = True
            self._emit(AuthEvent(EventKind.STORAGE_DEGRADED, self._clock.now(), detail))


def _interrupted() -> TransportError:
    """What followers of a leader stopped by Ctrl-C, SIGTERM or SystemExit are told."""
    return TransportError("the token renewal was interrupted before it finished; try again")


async def _wait(future: concurrent.futures.Future[Session]) -> Session:
    """Await a thread-safe future without letting our cancellation cancel it for all."""
    wrapped = asyncio.wrap_future(future)
    # If this waiter is cancelled, nobody reads the outcome: mark it read, not "lost".
    wrapped.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(wrapped)
