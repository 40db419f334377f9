"""Settings of the reference server.

Every number the real CIDX server hard-codes (lockout window, bucket size,
refresh-failure limit) is a named constant here, so tests and the contract
can be read side by side. `ServerConfig` holds what a deployment may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Algorithm = Literal["RS256", "HS256"]

DEFAULT_TOKEN_LIFETIME = 600
"""Access-token lifetime in seconds: the real server's `jwt_expiration_minutes * 60`."""

DEFAULT_REFRESH_LIFETIME = 604_800
"""Refresh-token lifetime in seconds (seven days)."""

DEFAULT_REPOSITORIES = ("backend", "frontend", "docs")

# Login limits, per username (known or not).
LOGIN_BUCKET_CAPACITY = 10
LOGIN_BUCKET_REFILL_SECONDS = 6.0
LOCKOUT_THRESHOLD = 5
LOCKOUT_WINDOW_SECONDS = 900.0
LOCKOUT_SECONDS = 900.0

# Refresh failures, counted across all users.
REFRESH_FAILURE_LIMIT = 10
REFRESH_FAILURE_WINDOW_SECONDS = 300.0
REFRESH_BLOCK_SECONDS = 300.0

DEFAULT_ROLE = "normal_user"
ROLES = frozenset({"admin", "power_user", "normal_user"})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What a reference server instance serves and how strictly.

    `users` maps names to clear-text passwords: this is a test double, and
    hashing would only add the latency that `login_delay` models on purpose.
    """

    users: dict[str, str] = field(default_factory=dict, repr=False)
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    alg: Algorithm = "RS256"
    refresh_lifetime: int = DEFAULT_REFRESH_LIFETIME
    issuer: str | None = None
    """Base URL named in `WWW-Authenticate`; None means the URL the request came to."""
    roles: dict[str, str] = field(default_factory=dict)
    mfa_users: frozenset[str] = frozenset()
    expired_password_users: frozenset[str] = frozenset()
    repositories: tuple[str, ...] = DEFAULT_REPOSITORIES
    login_delay: float = 0.0
    """Seconds every password check takes, standing in for bcrypt's cost."""
    hs256_secret: str | None = field(default=None, repr=False)
    """Fixed HS256 signing secret; None draws a random one at start-up."""
    clock_offset: float = 0.0
    """Seconds added to the server's clock from the start (skew tests)."""

    def __post_init__(self) -> None:
        if self.alg not in ("RS256", "HS256"):
            raise ValueError(f"alg must be RS256 or HS256, not {self.alg!r}")
        if self.token_lifetime <= 0 or self.refresh_lifetime <= 0:
            raise ValueError("token lifetimes must be positive")
        if self.login_delay < 0:
            raise ValueError("login_delay cannot be negative")
        unknown = set(self.roles.values()) - ROLES
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        strays = (set(self.roles) | self.mfa_users | self.expired_password_users) - set(self.users)
        if strays:
            raise ValueError(f"flags given for users that do not exist: {sorted(strays)}")

    def role_of(self, username: str) -> str:
        """The role a user's tokens carry."""
        return self.roles.get(username, DEFAULT_ROLE)
