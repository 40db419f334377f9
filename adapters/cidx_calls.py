"""What the CIDX API clients share: the calls, the retry loop and the answers' meaning.

The retry loop is written once, :func:`attempts`, a generator that yields what it
needs done (send, sleep, get a token ready); ``adapters.cidx_client`` drives it
blocking and on an event loop. Every attempt is admitted by the circuit breaker and
its outcome recorded: network errors, timeouts and 5xx count as failures, any other
answer as a success (errata #9). Transport trouble and 429 are retried with full-jitter
backoff, ``Retry-After`` honoured (errata #10); no other 4xx is retried, and a call
that is not idempotent is sent again only when the server surely never saw it. An
answer over 16 MiB, or a call that outlasts its deadline (``HttpSettings.api_deadline``),
is not retried at all: the server would only do it again.

Errors (besides :class:`CircuitOpen` and the token provider's own)::

    CidxAuthError
    └── ApiError                 any answer >= 400 after auth handling: .status, .detail
        ├── ApiUnauthorized      401 even with a renewed token (also AuthenticationError)
        ├── ApiUnavailable       5xx (also ServerUnavailable: retried, trips the breaker)
        └── ApiRateLimited       429 (also RateLimited: retried after Retry-After)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.http_limits import Attempt, TooLate
from adapters.http_settings import (
    DeadlinePassed,
    HttpSettings,
    UnusableAnswer,
    attempt_error,
    detail_of,
    dropped,
    json_body,
    never_sent,
    overdue,
)
from cidx_auth.domain.breaker import Admission
from cidx_auth.domain.errors import (
    AuthenticationError,
    CidxAuthError,
    CircuitOpen,
    ConfigurationError,
    ProtocolError,
    RateLimited,
    ServerUnavailable,
)
from cidx_auth.domain.query import QueryRequest
from cidx_auth.domain.retry import RetryPolicy, parse_retry_after
from cidx_auth.ports import Clock
from cidx_auth.service.breaker import CircuitBreaker

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ApiError(CidxAuthError):
    """The server answered a call with an error status; ``detail`` is its explanation.
    Exit 6: the server refused this request (400, 403, 404, 409, 422, ...)."""

    exit_code = 6

    def __init__(self, message: str, status: int, detail: str,
                 retry_after: float | None = None) -> None:
        Exception.__init__(self, message)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class ApiUnauthorized(ApiError, AuthenticationError):
    """The server refused the call's token twice, the second one freshly renewed."""

    exit_code = AuthenticationError.exit_code


class ApiUnavailable(ApiError, ServerUnavailable):
    """A 5xx answer: counted by the breaker and retried."""

    exit_code = ServerUnavailable.exit_code


class ApiRateLimited(ApiError, RateLimited):
    """A 429 answer: retried after the server's ``Retry-After``."""

    exit_code = RateLimited.exit_code


@dataclass(frozen=True, slots=True)
class Call:
    """One API call as the client sees it, before any token is attached."""

    method: str
    path: str
    body: Any = None
    authenticated: bool = True
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class Send:
    """Send the call once. Answer: the response, a :class:`Failure` or :class:`Refused`."""

    call: Call


@dataclass(frozen=True, slots=True)
class Failure:
    """The send failed before any answer; ``unsent`` when the server surely saw nothing,
    ``dropped`` when the connection closed under it (see ``http_settings.dropped``)."""

    error: CidxAuthError
    unsent: bool
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The token layer gave up on the call (it could not renew a token the server refused)."""

    error: CidxAuthError


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Warm:
    """Get a token ready before the breaker is asked (see :func:`attempts`)."""


Flow = Generator[Send | Sleep | Warm, Any, Any]


@dataclass(frozen=True, slots=True)
class Policies:
    """What the retry loop consults: shared by both clients."""

    settings: HttpSettings
    breaker: CircuitBreaker
    retry: RetryPolicy
    clock: Clock
    rng: Callable[[], float] = random.random


def attempts(call: Call, rules: Policies) -> Flow:
    """Perform ``call`` through the breaker with retries; returns the decoded body."""
    failures, reprobed = 0, False
    while True:
        if call.authenticated:
            # A renewal needs the breaker too. Done first, it is the half-open probe
            # itself, instead of being refused because this call already holds the probe.
            yield Warm()
        admission = rules.breaker.admit()
        outcome = yield from _send(call)
        if isinstance(outcome, Refused):
            # The token layer renews only after a 401, so the server did answer.
            rules.breaker.record(False)
            # Its renewal may have been refused only because this call held the probe;
            # the circuit has just closed, so one more go is fair.
            if admission is Admission.PROBE and isinstance(outcome.error, CircuitOpen) \
                    and not reprobed:
                reprobed = True
                continue
            raise outcome.error
        error, unsent = classify(outcome, call, rules)
        failed = isinstance(error, ServerUnavailable)
        rules.breaker.record(failed, getattr(error, "retry_after", None) if failed else None)
        if error is None:
            return decode(outcome, call, rules.settings)
        failures += 1
        delay = rules.retry.delay(error, failures, rules.rng())
        # A non-idempotent call the server may have started is not sent twice.
        may_resend = call.idempotent or unsent or isinstance(error, RateLimited)
        if delay is None or not may_resend or isinstance(error, UnusableAnswer | DeadlinePassed):
            raise error
        yield Sleep(delay)


def _send(call: Call) -> Flow:
    outcome = yield Send(call)
    if isinstance(outcome, Failure) and outcome.dropped and call.idempotent:
        # A stale pooled connection is not an outage: one immediate try on a fresh
        # connection, inside the same attempt. A server that is really gone fails
        # that try too, and only then does the breaker hear of it.
        outcome = yield Send(call)
    return outcome


def classify(outcome: httpx.Response | Failure, call: Call,
             rules: Policies) -> tuple[CidxAuthError | None, bool]:
    """(the error this outcome means or None, whether the server surely saw nothing)."""
    if isinstance(outcome, Failure):
        return outcome.error, outcome.unsent
    status = outcome.status_code
    if status < 400:
        return None, False
    detail = detail_of(outcome)
    where = f"{rules.settings.server} answered {status} to {call.method} {call.path}"
    retry_after = parse_retry_after(outcome.headers.get("Retry-After"), rules.clock.now())
    if status == 401:
        return ApiUnauthorized(f"{where} ({detail}) even with a renewed token: "
                               "run `cidx-auth login`", status, detail), False
    if status == 429:
        return ApiRateLimited(f"{where} ({detail}): too many requests, try again later",
                              status, detail, retry_after), True
    if status >= 500:
        return ApiUnavailable(f"{where} ({detail}); try again later",
                              status, detail, retry_after), False
    return ApiError(f"{where}: {detail}", status, detail), False


def decode(response: httpx.Response, call: Call, settings: HttpSettings) -> Any:
    """The JSON body of a successful answer; None for an empty one."""
    if not response.content:
        return None
    body = json_body(response)
    if body is None:
        raise ProtocolError(f"{settings.server} answered {call.method} {call.path} with "
                            "something that is not JSON; check the server URL")
    return body


def query_call(text: str | QueryRequest, repo: str | None = None,
               options: Mapping[str, Any] | None = None) -> Call:
    """``POST /api/query`` for a :class:`QueryRequest`, or for the text, an optional
    alias and keyword options (checked, and an unknown name refused, before any send)."""
    if isinstance(text, QueryRequest):
        if repo is not None or options:
            raise ConfigurationError("pass either a QueryRequest or the text and options, "
                                     "not both")
        return Call("POST", "/api/query", text.to_body())
    return Call("POST", "/api/query", QueryRequest.build(text, repo, options).to_body())


def generic_call(method: str, path: str, body: Any) -> Call:
    """Any call on this server. An absolute URL is refused: it would carry the token away."""
    if not path.startswith("/") or path.startswith("//"):
        raise ConfigurationError(f"{path!r} is not a path on the CIDX server (start it with /)")
    verb = method.upper()
    return Call(verb, path, body, idempotent=verb in IDEMPOTENT)


REPOS = Call("GET", "/api/repos")
HEALTH = Call("GET", "/health", authenticated=False)


def failure(exc: httpx.HTTPError | TooLate, call: Call, settings: HttpSettings,
            attempt: Attempt) -> Failure:
    """An exception from sending ``call`` as the flow's :class:`Failure`; nothing of
    httpx leaks. ``attempt`` held the call's deadline."""
    what = f"{call.method} {call.path}"
    if isinstance(exc, TooLate):
        return Failure(overdue(settings, attempt, what, reached=False), unsent=True)
    error = attempt_error(exc, settings, attempt, what)
    if isinstance(error, DeadlinePassed):
        return Failure(error, unsent=not error.reached)
    return Failure(error, never_sent(exc), dropped(exc))
