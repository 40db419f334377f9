"""The HTTP plumbing the auth gateway and the API client share.

Settings come from the user story (timeouts 10/30/10/5 s, 5 keep-alive and 10 pooled
connections kept 30 s, HTTP/2, 10 requests in flight) and the server contract (paths).
TLS verification cannot be switched off: there is a CA bundle setting for private
CAs, and no ``verify=False`` anywhere. httpx's exceptions are translated here, once,
into the project's errors (errata #8), with messages that name the server, never a token.

The proxy is decided once per settings (:func:`cidx_auth.domain.proxy.choose_proxy`:
never for a loopback server, never a remote one for a plain-http server without the
opt-in) and given to every client explicitly, with ``trust_env=False`` so that httpx
cannot add one of its own from the environment. TLS trust does not depend on
``trust_env``: the context is ours, and OpenSSL itself reads ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.http_limits import (
    ACCEPTED_ENCODINGS,
    MAX_API_ANSWER,
    Attempt,
    BadAnswer,
    hooks,
)
from cidx_auth._version import __version__
from cidx_auth.domain.errors import (
    CidxAuthError,
    ConfigurationError,
    ProtocolError,
    ServerUnavailable,
)
from cidx_auth.domain.proxy import ProxyChoice, choose_proxy
from cidx_auth.domain.retry import API_DEADLINE, AUTH_DEADLINE

MAX_DETAIL = 300
"""A server's ``detail`` is quoted in messages, but never at any length."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class UnusableAnswer(ServerUnavailable, ProtocolError):
    """An answer cidx-auth will not read: larger than its cap once decompressed, in an
    encoding it did not ask for, or not inflating. Exit 4 (the server cannot be used
    now); an API call is not retried after one."""


class DeadlinePassed(ServerUnavailable):
    """A request that did not finish within its overall deadline. Never retried: a server
    that dripped one answer would drip the next."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """How to reach one CIDX server. Frozen: a client is built from it once."""

    base_url: str
    login_path: str = "/auth/login"
    refresh_path: str = "/api/auth/refresh"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    write_timeout: float = 10.0
    pool_timeout: float = 5.0
    max_keepalive: int = 5
    max_connections: int = 10
    keepalive_expiry: float = 30.0
    http2: bool = True
    ca_bundle: Path | None = None
    ca_bundle_sha256: str | None = None
    """When set, ``ca_bundle`` is used only while its content has this SHA-256 (the pin
    ``cidx-auth login`` records): see :func:`ssl_context`."""
    max_in_flight: int = 10
    user_agent: str = f"cidx-auth/{__version__}"
    auth_deadline: float = AUTH_DEADLINE
    """D: the most one login or refresh may take, connect to last byte (the gateway's)."""
    api_deadline: float = API_DEADLINE
    """The most one API call may take, connect to last byte (its 401 retry included)."""
    plain_http: bool = False
    """The user's consent to clear text beyond this machine (``login --allow-plain-http``);
    here it lets a plain-http server's traffic cross a proxy that is not loopback."""
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    """Where the ``*_PROXY`` variables are read (None: ``os.environ``, now)."""
    proxy: ProxyChoice = field(init=False, repr=False, compare=False)
    """The proxy every client of these settings uses (or none), decided once, here; a
    refused one stops each client builder (:meth:`ProxyChoice.use`)."""

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.base_url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # raises ValueError for a port out of range or not a number
        except ValueError:
            valid = False
        if not valid:
            raise ConfigurationError(
                f"the server URL {self.base_url!r} is not an http(s) URL; "
                "give one like https://cidx.example.com"
            )
        from adapters.project_layout import server_url_problem

        problem = server_url_problem(self.base_url)  # what httpx would refuse mid-command
        if problem:
            raise ConfigurationError(f"the server URL {problem}")
        timeouts = (self.connect_timeout, self.read_timeout, self.write_timeout,
                    self.pool_timeout, self.keepalive_expiry, self.auth_deadline, self.api_deadline)
        if min(timeouts) <= 0:
            raise ConfigurationError("HTTP timeouts must be positive numbers of seconds")
        if min(self.max_keepalive, self.max_connections, self.max_in_flight) < 1:
            raise ConfigurationError("connection and in-flight limits must be at least 1")
        environ = os.environ if self.environ is None else self.environ
        object.__setattr__(self, "proxy", choose_proxy(self.base_url, environ, self.plain_http))

    @property
    def server(self) -> str:
        """The base URL without a trailing slash, as messages name the server."""
        return self.base_url.rstrip("/")

    def proxy_url(self) -> str | None:
        """The proxy URL every client is given (None: straight to the server); a refused
        one, or a SOCKS proxy without httpx's ``socks`` extra, is a
        :class:`ConfigurationError` (exit 2) before any request."""
        url = self.proxy.use()
        if url is not None and url.lower().startswith("socks"):
            from importlib.util import find_spec

            if find_spec("socksio") is None:
                raise ConfigurationError(
                    f"the proxy {self.proxy.shown} (from {self.proxy.source}) is a SOCKS "
                    "proxy, which needs httpx's socks extra (pip install 'httpx[socks]'); "
                    f"install it, or unset {self.proxy.source}")
        return url

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout, read=self.read_timeout,
                             write=self.write_timeout, pool=self.pool_timeout)

    def timeouts_within(self, attempt: Attempt) -> httpx.Timeout:
        """The per-phase timeouts, none longer than what remains of ``attempt``."""
        return attempt.timeouts(self.connect_timeout, self.read_timeout,
                                self.write_timeout, self.pool_timeout)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(max_keepalive_connections=self.max_keepalive,
                            max_connections=self.max_connections,
                            keepalive_expiry=self.keepalive_expiry)


def ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """A verifying TLS context: the system CAs, or only ``ca_bundle`` when one is set,
    loaded from the very bytes checked against ``ca_bundle_sha256``."""
    # create_default_context turns on CERT_REQUIRED and hostname checks; nothing here
    # or elsewhere turns them off. httpcore adds the ALPN offer (h2, http/1.1) itself.
    if settings.ca_bundle is None:
        return ssl.create_default_context()
    from adapters.settings_seal import read_ca_bundle

    content = read_ca_bundle(settings.ca_bundle, settings.ca_bundle_sha256)
    try:  # PEM is text to the ssl module; anything else is tried as DER
        pem = b"-----BEGIN" in content
        return ssl.create_default_context(cadata=content.decode("latin-1") if pem else content)
    except (OSError, ValueError) as exc:  # ssl.SSLError included: a file that is not PEM
        raise ConfigurationError(
            f"the CA bundle {settings.ca_bundle} cannot be used "
            f"({getattr(exc, 'strerror', None) or exc}); "
            "pass a PEM file of CA certificates with --ca-bundle"
        ) from None


def _client_options(settings: HttpSettings, custom_transport: bool,
                    context: ssl.SSLContext | None,
                    limits: httpx.Limits | None = None) -> dict[str, Any]:
    proxy = settings.proxy_url()  # a refused proxy: ConfigurationError, nothing sent
    options: dict[str, Any] = {
        "base_url": settings.server,
        "timeout": settings.timeout(),
        "limits": limits or settings.limits(),
        "http2": settings.http2,
        "headers": {"User-Agent": settings.user_agent, "Accept": "application/json",
                    "Accept-Encoding": ACCEPTED_ENCODINGS},
        "follow_redirects": False,
        # The proxy is ours to decide (above), not the environment's behind our back.
        "trust_env": False,
    }
    if proxy is not None and not custom_transport:  # a test's transport is the route
        options["proxy"] = proxy
    if not custom_transport:
        # Building a context reads the CA store (tens of ms), so it is skipped when a
        # test supplies its own transport, and a caller building two clients shares one.
        options["verify"] = context or ssl_context(settings)
    return options


def make_client(
    settings: HttpSettings,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
    context: ssl.SSLContext | None = None,
    limits: httpx.Limits | None = None,
    cap: int = MAX_API_ANSWER,
) -> httpx.Client:
    """A blocking httpx client configured from ``settings`` (``transport`` for tests).

    ``limits`` replaces the settings' pool limits (the auth gateway keeps no idle
    connections); no answer may hold more than ``cap`` bytes once decompressed.
    """
    options = _client_options(settings, transport is not None, context, limits)
    return httpx.Client(auth=auth, transport=transport, event_hooks=hooks(cap), **options)


def make_async_client(
    settings: HttpSettings,
    auth: httpx.Auth | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """The asyncio twin of :func:`make_client`."""
    options = _client_options(settings, transport is not None, context)
    return httpx.AsyncClient(auth=auth, transport=transport,
                             event_hooks=hooks(MAX_API_ANSWER, asynchronous=True), **options)


def _untrusted(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def never_sent(exc: httpx.HTTPError) -> bool:
    """True when the request certainly did not reach the server (safe to send again).
    A ``ProxyError``: the proxy would not open the tunnel (or SOCKS connection) to it."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                      | httpx.ProxyError)


def dropped(exc: httpx.HTTPError) -> bool:
    """True when an open connection was closed under the request, with no answer yet.

    The usual cause is a pooled keep-alive connection the server had already given up
    (an HTTP/2 server may close one after answering a request whose body it never
    read), so the next request meets a closed socket. A fresh connection usually works.
    """
    return isinstance(exc, httpx.RemoteProtocolError | httpx.WriteError | httpx.ReadError)


def transport_error(exc: httpx.HTTPError, settings: HttpSettings) -> CidxAuthError:
    """Translate an httpx exception; the message names the server and what to do."""
    server = settings.server
    if isinstance(exc, BadAnswer):
        return UnusableAnswer(f"the answer from {server} {_short(exc)}; check the server URL")
    if isinstance(exc, httpx.ConnectError) and _untrusted(exc):
        # Not a transient fault: retrying or counting it against the breaker would hide
        # the real problem (a private CA, or someone in the middle) behind "unavailable".
        return ConfigurationError(
            f"the certificate of {server} is not trusted (or does not match its name); "
            "if the server uses a private CA, pass its certificate with --ca-bundle"
        )
    proxy = settings.proxy
    if proxy.url is not None and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout
                                            | httpx.ProxyError):
        # Through a proxy, the connection made (or refused) is the proxy's: naming the
        # server would send the user looking at the wrong machine. Never its userinfo.
        via = f"the proxy {proxy.shown} (from {proxy.source})"
        if isinstance(exc, httpx.ProxyError):
            return ServerUnavailable(f"{via} would not connect to {server} ({clean(_short(exc))}); "
                                     f"check the proxy, or unset {proxy.source}",
                                     reached=False)
        failed = "timed out" if isinstance(exc, httpx.ConnectTimeout) else \
            f"could not be reached ({_short(exc)})"
        return ServerUnavailable(f"{via} {failed} on the way to {server}; check the proxy, "
                                 f"or unset {proxy.source}", reached=False)
    if isinstance(exc, httpx.TimeoutException):
        phase = {httpx.ConnectTimeout: "connecting", httpx.ReadTimeout: "waiting for an answer",
                 httpx.WriteTimeout: "sending the request",
                 httpx.PoolTimeout: "waiting for a free connection"}.get(type(exc), "waiting")
        return ServerUnavailable(f"{server} timed out while {phase}; try again later",
                                 reached=not never_sent(exc))
    if isinstance(exc, httpx.ConnectError):
        return ServerUnavailable(f"could not connect to {server} ({_short(exc)}); "
                                 "check the URL and that the server is running", reached=False)
    if isinstance(exc, httpx.TransportError):
        return ServerUnavailable(f"the connection to {server} failed "
                                 f"({type(exc).__name__}: {_short(exc)}); try again later")
    return ConfigurationError(f"the request to {server} could not be made ({_short(exc)})")


def attempt_error(exc: httpx.HTTPError, settings: HttpSettings, attempt: Attempt,
                  what: str) -> CidxAuthError:
    """:func:`transport_error`, told that the request had ``attempt``'s deadline.

    A connection the watchdog shut looks like any dropped one; after the deadline it
    is that deadline's doing, and ``what`` (e.g. "the login") says which request it was.
    """
    error = transport_error(exc, settings)
    if isinstance(error, ServerUnavailable) and not isinstance(error, UnusableAnswer) \
            and attempt.left() <= 0:
        return overdue(settings, attempt, what, reached=attempt.sent or error.reached)
    return error


def overdue(settings: HttpSettings, attempt: Attempt, what: str, *,
            reached: bool) -> DeadlinePassed:
    """The error for a request its deadline cut short: an answer lost, when ``reached``."""
    return DeadlinePassed(f"{settings.server} did not finish {what} within "
                          f"{attempt.deadline:g} s; try again later", reached=reached)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_DETAIL]


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or None when the body is not JSON."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        # ValueError: not JSON, not UTF-8, or an integer of over 4,300 digits (which
        # ``json`` refuses to read); RecursionError: nested deeper than the parser's stack.
        return None


def _problem(item: Any) -> str:
    if not isinstance(item, dict):
        return "invalid value"
    message = str(item.get("msg", "invalid value"))
    location = item.get("loc")
    if isinstance(location, list) and location:
        where = ".".join(str(part) for part in location[1:] or location)
        return f"{where}: {message}"
    return message


def detail_of(response: httpx.Response) -> str:
    """The server's ``detail`` as one line: a string, a 422's list of messages, or the
    reason; cleaned and cut to :data:`MAX_DETAIL` characters."""
    return clean(full_detail(response))


def full_detail(response: httpx.Response) -> str:
    """The server's ``detail`` as sent, uncut (to look into, not to print)."""
    body = json_body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        # Each item's field and "msg" only: a 422 item also echoes the input, which may be
        # a password. The field path ("body.query_text") holds no user input.
        detail = "; ".join(_problem(item) for item in detail)
    if not isinstance(detail, str) or not detail:
        detail = response.reason_phrase or f"HTTP {response.status_code}"
    return detail


def clean(text: str) -> str:
    """Server text made fit for one line of a message: no control characters, short."""
    return _CONTROL.sub(" ", text)[:MAX_DETAIL]
