"""What an answer of the CIDX API means: httpx's outcomes in the core's terms.

The rules of a call (retries, the breaker, when a call may be sent twice) live in
:mod:`cidx_auth.service.api_calls`; ``adapters.cidx_client`` sends what its loop asks
for and hands back what happened through :func:`answer` (a response) or
:func:`failure` (an exception): an :class:`Answer` or a :class:`Failure` holding one
of the errors below, and nothing of httpx.

Errors (besides :class:`CircuitOpen` and the token provider's own)::

    CidxAuthError
    └── ApiError                 any answer >= 400 after auth handling: .status, .detail
        ├── ApiUnauthorized      401 even with a renewed token (also AuthenticationError)
        ├── ApiUnavailable       5xx (also ServerUnavailable: retried, trips the breaker)
        └── ApiRateLimited       429 (also RateLimited: retried after Retry-After)
"""

from __future__ import annotations

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
from cidx_auth.domain.errors import (
    AuthenticationError,
    CidxAuthError,
    ProtocolError,
    RateLimited,
    ServerUnavailable,
)
from cidx_auth.domain.retry import parse_retry_after
from cidx_auth.service.api_calls import Answer, Call, Failure


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


def answer(response: httpx.Response, call: Call, settings: HttpSettings,
           now: float) -> Answer | Failure:
    """What the server's answer to ``call`` means: its decoded body, or the refusal."""
    status = response.status_code
    if status < 400:
        return _decoded(response, call, settings)
    detail = detail_of(response)
    where = f"{settings.server} answered {status} to {call.method} {call.path}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status == 401:
        return Failure(ApiUnauthorized(f"{where} ({detail}) even with a renewed token: "
                                       "run `cidx-auth login`", status, detail))
    if status == 429:
        return Failure(ApiRateLimited(f"{where} ({detail}): too many requests, try again "
                                      "later", status, detail, retry_after))
    if status >= 500:
        return Failure(ApiUnavailable(f"{where} ({detail}); try again later",
                                      status, detail, retry_after))
    return Failure(ApiError(f"{where}: {detail}", status, detail))


def _decoded(response: httpx.Response, call: Call, settings: HttpSettings) -> Answer | Failure:
    """The JSON body of a successful answer (None for an empty one); not JSON is a failure."""
    if not response.content:
        return Answer(None)
    body = json_body(response)
    if body is None:
        return Failure(ProtocolError(f"{settings.server} answered {call.method} {call.path} "
                                     "with something that is not JSON; check the server URL"))
    return Answer(body)


def failure(exc: httpx.HTTPError | TooLate, call: Call, settings: HttpSettings,
            attempt: Attempt) -> Failure:
    """An exception from sending ``call`` as the flow's :class:`Failure`; nothing of
    httpx leaks. ``attempt`` held the call's deadline."""
    what = f"{call.method} {call.path}"
    if isinstance(exc, TooLate):
        return Failure(overdue(settings, attempt, what, reached=False), unsent=True, final=True)
    error = attempt_error(exc, settings, attempt, what)
    if isinstance(error, DeadlinePassed):
        return Failure(error, unsent=not error.reached, final=True)
    final = isinstance(error, UnusableAnswer)  # the server would only send it again
    return Failure(error, never_sent(exc), dropped(exc), final)
