"""Refresh-token families with rotation and reuse detection.

A login opens a family; each refresh retires the presented token and adds a
new one to the same family. The real server keeps no grace window, and
neither does this one: presenting a retired token is taken as theft, so the
whole family is revoked and every token in it answers "revoked" afterwards.
The order of checks below is the order the wire messages take precedence:

    unknown token            -> "Invalid refresh token"
    family already revoked   -> "Refresh token revoked due to <reason>"
    token already used       -> "Token replay attack detected" (family revoked)
    token past its lifetime  -> "Refresh token has expired"
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

REPLAY_REASON = "replay_attack"
ADMIN_REASON = "admin_revoke"
LOGOUT_REASON = "logout"


class RefreshRejected(Exception):
    """A refresh the server refuses.

    `username` names the family's owner when the token was known, so the
    statistics can charge the failure to someone; `replay` marks reuse.
    """

    def __init__(self, detail: str, username: str | None = None, replay: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.username = username
        self.replay = replay


@dataclass(slots=True)
class _Family:
    username: str
    role: str
    revoked_reason: str | None = None


@dataclass(slots=True)
class _Issued:
    family_id: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a successful refresh."""

    refresh_token: str
    username: str
    role: str


class RefreshSessions:
    """All refresh families of one server instance, kept in memory."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self._families: dict[str, _Family] = {}
        self._issued: dict[str, _Issued] = {}

    def open(self, username: str, role: str, now: float) -> str:
        """Start a family for a fresh login and return its first token."""
        family_id = secrets.token_hex(16)
        self._families[family_id] = _Family(username=username, role=role)
        return self._mint(family_id, now)

    def rotate(self, token: str, now: float) -> Rotation:
        """Spend `token` and hand out its successor, or raise `RefreshRejected`."""
        issued = self._issued.get(token)
        if issued is None:
            raise RefreshRejected("Invalid refresh token")
        family = self._families[issued.family_id]
        if family.revoked_reason is not None:
            raise RefreshRejected(
                f"Refresh token revoked due to {family.revoked_reason}", family.username
            )
        if issued.used:
            family.revoked_reason = REPLAY_REASON
            raise RefreshRejected("Token replay attack detected", family.username, replay=True)
        if now >= issued.expires_at:
            raise RefreshRejected("Refresh token has expired", family.username)
        issued.used = True
        return Rotation(self._mint(issued.family_id, now), family.username, family.role)

    def revoke_token_family(self, token: str, reason: str) -> bool:
        """Revoke the family `token` belongs to; False when the token is unknown."""
        issued = self._issued.get(token)
        if issued is None:
            return False
        family = self._families[issued.family_id]
        if family.revoked_reason is None:
            family.revoked_reason = reason
        return True

    def revoke_user(self, username: str, reason: str) -> int:
        """Revoke every live family of `username`; returns how many were revoked."""
        count = 0
        for family in self._families.values():
            if family.username == username and family.revoked_reason is None:
                family.revoked_reason = reason
                count += 1
        return count

    def _mint(self, family_id: str, now: float) -> str:
        # 64 random bytes encode to 86 URL-safe characters, the real server's length.
        token = secrets.token_urlsafe(64)
        self._issued[token] = _Issued(family_id, now + self.lifetime)
        return token
