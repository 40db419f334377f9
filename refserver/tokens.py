"""Access tokens: signing, checking and the logout blacklist.

The real server signs HS256 with a secret it never shares; the user story
wants RS256 with a published key. Both are offered so the client's
algorithm allow-list can be tested against each. Claims follow the real
server exactly: `exp` and `iat` are floats with microseconds, `created_at`
is an ISO string after a login and null after a refresh.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from refserver.config import Algorithm

RSA_KEY_BITS = 2048


class TokenRejected(Exception):
    """An access token the server refuses; `detail` is the wire message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AccessTokens:
    """Issues and checks the server's access tokens."""

    def __init__(self, alg: Algorithm, lifetime: int, secret: str | None = None) -> None:
        self.alg = alg
        self.lifetime = lifetime
        self._revoked_jtis: set[str] = set()
        # Each token issued and not yet expired, with its expiry, in the order issued:
        # what revoke_issued refuses. Pruned as tokens expire, so a long-running server
        # keeps only the live ones. (The blacklist is not pruned: the admin API can set
        # the clock back, and a logged-out token must stay refused whatever the clock.)
        self._issued: dict[str, float] = {}
        self._kid = f"refserver-{secrets.token_hex(8)}"
        self._private: rsa.RSAPrivateKey | None = None
        self._secret = ""
        if alg == "RS256":
            self._private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        else:
            # 48 random bytes: comfortably above HS256's 32-byte minimum.
            self._secret = secret if secret is not None else secrets.token_urlsafe(48)

    def issue(self, username: str, role: str, created_at: str | None, now: float) -> str:
        """A fresh signed token for `username`, valid for `lifetime` seconds from `now`."""
        claims: dict[str, Any] = {
            "username": username,
            "role": role,
            "created_at": created_at,
            "exp": round(now + self.lifetime, 6),
            "iat": round(now, 6),
            "jti": str(uuid.uuid4()),
        }
        self._forget_expired(now)
        self._issued[claims["jti"]] = claims["exp"]
        if self._private is not None:
            return jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": self._kid})
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """The claims of a token the server accepts at `now`.

        Expiry is checked here rather than by PyJWT so that it uses the
        server's clock (which tests fake or shift) and no leeway at all.
        """
        key: Any = self._private.public_key() if self._private is not None else self._secret
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.alg],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("Invalid token") from exc
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("Invalid token")
        if not isinstance(claims.get("username"), str):
            raise TokenRejected("Invalid token")
        if now >= exp:
            raise TokenRejected("Token has expired")
        if claims.get("jti") in self._revoked_jtis:
            raise TokenRejected("Token has been revoked")
        return claims

    def revoke(self, jti: str) -> None:
        """Blacklist one token (what logout does)."""
        self._revoked_jtis.add(jti)

    def revoke_issued(self, now: float) -> int:
        """Blacklist every token issued and still valid at ``now``, as if each had logged
        out (a test's way to make the server refuse a token the client still thinks
        good); how many that newly refused. An expired token is refused already."""
        live = {jti for jti, exp in self._issued.items() if now < exp}
        fresh = live - self._revoked_jtis  # a logged-out one was refused already
        self._revoked_jtis |= fresh
        self._issued.clear()  # every live one is blacklisted now: nothing left to track
        return len(fresh)

    def _forget_expired(self, now: float) -> None:
        """Drop the oldest issued tokens while they have expired: amortised O(1) per
        token (one issued under a shorter lifetime set later waits for those before it)."""
        while self._issued:
            jti, exp = next(iter(self._issued.items()))
            if now < exp:
                return
            del self._issued[jti]

    @property
    def tracked(self) -> int:
        """How many issued tokens are kept for :meth:`revoke_issued` (the live ones,
        and expired ones not yet pruned)."""
        return len(self._issued)

    def jwks(self) -> dict[str, Any]:
        """The public verification keys as a JWK set (empty for HS256)."""
        if self._private is None:
            return {"keys": []}
        jwk: dict[str, Any] = dict(RSAAlgorithm.to_jwk(self._private.public_key(), as_dict=True))
        jwk.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}
