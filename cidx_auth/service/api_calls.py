"""The rules of an API call: what it is, when it is tried again, what the breaker hears.

The loop is written once, :func:`attempts`, a sans-IO generator that yields what it
needs done (:class:`Send`, :class:`Sleep`, :class:`Warm`: get a token ready) and is
answered with an :class:`Answer`, a :class:`Failure` or a :class:`Refused`; the API
clients in ``adapters.cidx_client`` drive it blocking and on an event loop, and
translate what httpx did into those three. The decisions, each a function of its own:

* every attempt is admitted by the circuit breaker, and only a server that is unwell
  (network errors, timeouts, 5xx: :func:`breaker_failure`) counts against it; any
  other answer, a 4xx included, shows the server up (errata #9);
* transport trouble and 429 are tried again with full-jitter backoff, ``Retry-After``
  honoured (errata #10, ``domain.retry``); no other refusal is;
* a call that is not idempotent is sent again only when the server surely did not act
  on it (:func:`may_send_again`);
* a failure the adapter marks ``final`` (an answer over its cap, a call that outlasted
  its deadline) is never tried again: the server would only do the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from cidx_auth.domain.breaker import Admission
from cidx_auth.domain.errors import (
    CidxAuthError,
    CircuitOpen,
    ConfigurationError,
    RateLimited,
    ServerUnavailable,
)
from cidx_auth.domain.query import QueryRequest
from cidx_auth.domain.retry import RetryPolicy
from cidx_auth.service.breaker import CircuitBreaker

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Call:
    """One API call as the client sees it, before any token is attached."""

    method: str
    path: str
    body: Any = None
    authenticated: bool = True
    idempotent: bool = True


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
    """Any call on this server. An absolute URL is refused: it would carry the token away.

    Everything is checked before any request, each a :class:`ConfigurationError`: the
    method (ASCII letters), the path (no control character; ``/`` and not ``//``) and
    the body (JSON can carry it). A message never shows a path's query string or a
    URL's ``user:password@``, nor any value of the body."""
    if not isinstance(method, str) or not (method.isascii() and method.isalpha()):
        raise ConfigurationError(f"{method!r} is not an HTTP method (GET, POST, ...)")
    if not isinstance(path, str):
        raise ConfigurationError(f"a {type(path).__name__} is not a path on the CIDX "
                                 "server: give request() text starting with /")
    control = next((at for at, char in enumerate(path) if _is_control(char)), None)
    if control is not None:
        raise ConfigurationError(
            f"the path given to request() holds a control character "
            f"({path[control]!a} at position {control}); percent-encode it (%0A for "
            "a newline) or leave it out")
    if not path.startswith("/") or path.startswith("//"):
        raise ConfigurationError(f"{_shown(path)} is not a path on the CIDX server "
                                 "(start it with /)")
    _check_json(body)
    verb = method.upper()
    return Call(verb, path, body, idempotent=verb in IDEMPOTENT)


def _is_control(char: str) -> bool:
    """C0 and C1 controls and DEL: httpx refuses the first, and none belongs in a path."""
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


def _shown(path: str) -> str:
    """``path`` for a message: no query string or fragment, and nothing of a URL's
    authority before its last ``@`` (``https://alice:hunter2@host`` shows as
    ``https://host``); without ``//`` (a malformed URL such as ``http:/alice:pw@host``),
    nothing before its last ``@``."""
    text = path.split("?", 1)[0].split("#", 1)[0]
    head, slashes, rest = text.partition("//")
    return repr(f"{head}{slashes}{rest.rpartition('@')[2]}" if slashes
                else text.rpartition("@")[2])


def _check_json(body: Any) -> None:
    """Refuse a body JSON cannot carry, as httpx would encode it (no NaN, UTF-8), with a
    message that names the kind of trouble, never a value."""
    try:
        json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        why = "a string with a lone surrogate, which UTF-8 cannot encode"
    except RecursionError:
        why = "lists or objects nested too deeply"
    except (TypeError, ValueError) as error:  # e.g. a set; NaN or infinity; a cycle
        why = str(error).split(":", 1)[0]
    else:
        return
    raise ConfigurationError(f"the json body given to request() cannot be sent as JSON "
                             f"({why}); give it lists, dicts with text keys, text, "
                             "finite numbers, booleans and None")


REPOS = Call("GET", "/api/repos")
HEALTH = Call("GET", "/health", authenticated=False)


@dataclass(frozen=True, slots=True)
class Send:
    """Send the call once. Answer: an :class:`Answer`, :class:`Failure` or :class:`Refused`."""

    call: Call


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Warm:
    """Get a token ready before the breaker is asked (see :func:`attempts`)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The server accepted the call; ``body`` is its decoded answer."""

    body: Any


@dataclass(frozen=True, slots=True)
class Failure:
    """The call failed: the server refused it, or the send failed before any answer.

    ``unsent``: the server surely never saw it. ``dropped``: the connection closed
    under it with no answer yet (often a stale pooled connection). ``final``: sending
    it again would only repeat this (an answer over its cap, a deadline passed).
    """

    error: CidxAuthError
    unsent: bool = False
    dropped: bool = False
    final: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The token layer gave up on the call (it could not renew a token the server refused)."""

    error: CidxAuthError


Outcome = Answer | Failure | Refused
Flow = Generator[Send | Sleep | Warm, Any, Any]


def breaker_failure(error: CidxAuthError | None) -> bool:
    """Whether an outcome counts against the server: only when it is unwell."""
    return isinstance(error, ServerUnavailable)


def may_send_again(call: Call, failure: Failure) -> bool:
    """Whether sending ``call`` again cannot make the server act on it twice."""
    if failure.final:
        return False
    return call.idempotent or failure.unsent or isinstance(failure.error, RateLimited)


def fresh_connection_worth_it(call: Call, outcome: Outcome) -> bool:
    """A stale pooled connection is not an outage: an idempotent call whose connection
    closed under it gets one immediate try on a fresh one, inside the same attempt. A
    server that is really gone fails that try too, and only then does the breaker hear."""
    return isinstance(outcome, Failure) and outcome.dropped and call.idempotent


@dataclass(frozen=True, slots=True)
class ApiPolicy:
    """What :func:`attempts` consults: the breaker, the backoff and its random draw."""

    breaker: CircuitBreaker
    retry: RetryPolicy = RetryPolicy()
    rng: Callable[[], float] = random.random


def attempts(call: Call, policy: ApiPolicy) -> Flow:
    """Perform ``call`` through the breaker with retries; returns the answer's body."""
    failures, reprobed = 0, False
    while True:
        if call.authenticated:
            # A renewal needs the breaker too. Done first, it is the half-open probe
            # itself, instead of being refused because this call already holds the probe.
            yield Warm()
        admission = policy.breaker.admit()
        outcome = yield from _sent(call, admission, policy.breaker)
        if isinstance(outcome, Refused):
            # The token layer renews only after a 401, so the server did answer.
            policy.breaker.record(False)
            # Its renewal may have been refused only because this call held the probe;
            # the circuit has just closed, so one more go is fair.
            if admission is Admission.PROBE and isinstance(outcome.error, CircuitOpen) \
                    and not reprobed:
                reprobed = True
                continue
            raise outcome.error
        if isinstance(outcome, Answer):
            policy.breaker.record(False)
            return outcome.body
        failed = breaker_failure(outcome.error)
        policy.breaker.record(failed, _retry_after(outcome.error) if failed else None)
        failures += 1
        delay = policy.retry.delay(outcome.error, failures, policy.rng())
        if delay is None or not may_send_again(call, outcome):
            raise outcome.error
        yield Sleep(delay)


def _sent(call: Call, admission: Admission, breaker: CircuitBreaker) -> Flow:
    """Send ``call`` (again on a fresh connection when that is worth it); its outcome.

    A driver interrupted meanwhile (Ctrl-C, SIGTERM, a cancelled task) closes the flow
    here: a probe then gives its turn back, since it will never report."""
    try:
        outcome = yield Send(call)
        if fresh_connection_worth_it(call, outcome):
            outcome = yield Send(call)
    except GeneratorExit:
        if admission is Admission.PROBE:
            breaker.abandon_probe()
        raise
    return outcome


def _retry_after(error: CidxAuthError) -> float | None:
    return getattr(error, "retry_after", None)
