"""Access tokens read from the JWT itself, and the session a store keeps.

The signature is not checked here: the server checks it on every call, and the
client only needs the claims to know when the token stops working. What is checked
is everything the client relies on (errata #2, #3): the algorithm comes from the JWT
header, the expiry from its ``exp`` claim, and ``expires_in`` is a fallback only for
a JWT without ``exp``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from cidx_auth.domain.bounds import LATEST_TIME, moment
from cidx_auth.domain.errors import DisallowedAlgorithm, MalformedToken, UnusableLifetime

MAX_LIFETIME = 24 * 3600.0
"""No access token may live longer than a day (user story, security requirements)."""

DEFAULT_ALLOWED_ALGORITHMS = frozenset({"RS256"})
JWS_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                  "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA")
"""The JWS signature algorithms a project may pin (never ``none``). Before a project's
first login pins one, any of these is accepted; afterwards only the pinned one."""


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What the client accepts from the server; a setting, RS256 only by default."""

    allowed_algorithms: frozenset[str] = DEFAULT_ALLOWED_ALGORITHMS
    max_lifetime: float = MAX_LIFETIME
    max_future_iat: float = 30.0

    def __post_init__(self) -> None:
        if any(alg.lower() == "none" for alg in self.allowed_algorithms):
            raise DisallowedAlgorithm('the JWT algorithm "none" can never be allowed')
        if not self.allowed_algorithms:
            raise DisallowedAlgorithm("at least one JWT algorithm must be allowed")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A parsed access token. ``raw`` is the secret and stays out of ``repr``."""

    raw: str = field(repr=False)
    alg: str
    exp: float
    iat: float | None
    jti: str | None
    username: str | None

    @property
    def fingerprint(self) -> str:
        """A short, non-secret name for this token, safe for logs and comparisons."""
        return fingerprint_of(self.raw)

    @property
    def lifetime(self) -> float | None:
        """Seconds between issue and expiry, when the token says when it was issued."""
        return None if self.iat is None else self.exp - self.iat


def fingerprint_of(raw: str) -> str:
    """A short one-way name for a token: tells tokens apart without revealing them."""
    import hashlib  # here, not at the top: a cold `cidx-auth token` never needs it

    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Grant:
    """What the server answers to a login or a refresh, before our rules look at it."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float | None = None
    server_date: float | None = None
    """The server's clock when it answered (its ``Date`` header), if known."""


@dataclass(frozen=True, slots=True)
class Session:
    """What the token store keeps: the token, its rotating refresh token, clock offset."""

    token: AccessToken
    refresh_token: str | None = field(default=None, repr=False)
    clock_offset: float = 0.0
    """Estimated ``server clock - client clock`` in seconds when the token arrived."""
    username: str | None = None
    refresh_in_flight: bool = False
    """The write-ahead intent: this session's refresh token was taken out to be sent and
    no answer has been stored since. Whoever finds it logs in; nobody refreshes."""
    refused: bool = False
    """The server answered 401 to this access token (revoked, or its secret changed):
    no one hands it out again, though it has not expired."""


_JWT_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
)
"""All a compact JWS may hold: base64url segments and the dots between them. Anything
else (a newline, a space, a quote) would end up in a ``curl -H`` line or a log when the
token is printed, so it is refused before the token is stored or shown."""


def check_jwt_shape(raw: object) -> str:
    """``raw`` if it is three base64url segments (the first two non-empty) joined by
    dots; else :class:`MalformedToken`. Says nothing about the token itself."""
    if not isinstance(raw, str) or not _JWT_CHARACTERS.issuperset(raw):
        raise MalformedToken("the access token holds characters a JWT cannot (only "
                             "base64url and dots)")
    parts = raw.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise MalformedToken("the access token is not a JWT (three dot-separated parts)")
    return raw


def _b64decode(part: str) -> bytes:
    padded = part + "=" * (-len(part) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedToken("the access token is not base64url-encoded") from exc


def _json_object(part: str, what: str) -> dict[str, Any]:
    data = _b64decode(part)  # outside the try: its MalformedToken is a ValueError too
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedToken(f"the access token's {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedToken(f"the access token's {what} is not a JSON object")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float: no usable time
        return None
    return number if math.isfinite(number) else None


def parse_access_token(
    raw: str,
    rules: TokenRules,
    server_now: float,
    expires_in: float | None = None,
) -> AccessToken:
    """Parse and check a JWT; ``server_now`` is our best guess at the server's clock.

    Raises a :class:`TokenRejected` subclass naming what is wrong, never the token.
    """
    parts = check_jwt_shape(raw).split(".")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "claims")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise DisallowedAlgorithm('the access token is unsigned (alg "none" or missing)')
    if alg not in rules.allowed_algorithms:
        allowed = ", ".join(sorted(rules.allowed_algorithms))
        raise DisallowedAlgorithm(
            f"the server signs tokens with {alg}, but only {allowed} is allowed here (the "
            "algorithm pinned at login); if the server really changed, run `cidx-auth "
            "login` again to pin it anew"
        )
    iat = _number(claims.get("iat"))
    exp = _number(claims.get("exp"))
    if exp is None and "exp" not in claims:
        fallback = _number(expires_in)
        if fallback is not None and fallback > 0:
            exp = (iat if iat is not None else server_now) + fallback
    if exp is None:
        raise UnusableLifetime("the access token has no usable expiry (exp claim)")
    if iat is not None and iat > server_now + rules.max_future_iat:
        raise UnusableLifetime("the access token was issued in the future: check the clock")
    start = iat if iat is not None else server_now
    if exp - start > rules.max_lifetime:
        raise UnusableLifetime("the access token lives longer than the 24 h maximum")
    if iat is not None and exp <= iat:
        raise UnusableLifetime("the access token expires before it was issued")
    jti = claims.get("jti")
    username = claims.get("username", claims.get("sub"))
    return AccessToken(
        raw=raw,
        alg=alg,
        exp=exp,
        iat=iat,
        jti=jti if isinstance(jti, str) else None,
        username=username if isinstance(username, str) else None,
    )


SESSION_FORMAT_VERSION = 1


def session_to_dict(session: Session, stored_at: float) -> dict[str, Any]:
    """The session as plain JSON data, for a store to encrypt and keep."""
    token = session.token
    return {
        "version": SESSION_FORMAT_VERSION,
        "access_token": token.raw,
        "alg": token.alg,
        "expires_at": token.exp,
        "issued_at": token.iat,
        "jti": token.jti,
        "token_username": token.username,
        "refresh_token": session.refresh_token,
        "clock_offset": session.clock_offset,
        "username": session.username,
        "refresh_in_flight": session.refresh_in_flight,
        "refused": session.refused,
        "stored_at": stored_at,
    }


def _stored_time(value: Any, problem: str, earliest: float = 0.0) -> float:
    """A time read back from a store: 1970 to 9999 (an offset: within that span either
    way), a number, never a bool, NaN or infinity (:mod:`cidx_auth.domain.bounds`);
    :class:`MalformedToken` saying ``problem`` otherwise."""
    try:
        return moment(value, LATEST_TIME, earliest)
    except ValueError:
        raise MalformedToken(problem) from None


def session_from_dict(data: Any) -> Session:
    """Rebuild a stored session; raises :class:`MalformedToken` if anything is off."""
    if not isinstance(data, dict) or data.get("version") != SESSION_FORMAT_VERSION:
        raise MalformedToken("the stored session has an unknown format")
    raw = data.get("access_token")
    missing = "the stored session is missing its token or expiry"
    exp = _stored_time(data.get("expires_at"), missing)
    offset = _stored_time(data.get("clock_offset"), missing, earliest=-LATEST_TIME)
    if not isinstance(raw, str):
        raise MalformedToken(missing)
    check_jwt_shape(raw)  # a stored token is printed by `token`: the same rule as a new one
    iat = data.get("issued_at")
    if iat is not None:
        iat = _stored_time(iat, "the stored session has a bad issue time")

    def text(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise MalformedToken(f"the stored session has a bad {key}")
        return value

    alg = text("alg")
    if alg is None:
        raise MalformedToken("the stored session has no algorithm")
    in_flight, refused = data.get("refresh_in_flight", False), data.get("refused", False)
    if not isinstance(in_flight, bool) or not isinstance(refused, bool):
        raise MalformedToken("the stored session has a bad flag")
    token = AccessToken(raw, alg, exp, iat, text("jti"), text("token_username"))
    return Session(token, text("refresh_token"), offset, text("username"), in_flight, refused)
