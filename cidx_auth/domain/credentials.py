"""Stored login credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from cidx_auth.domain.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and its password; the password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        # The server's own limits (server-contract: 1-255 and 1-1000 characters).
        if not 1 <= len(self.username) <= 255:
            raise ConfigurationError("the username must be 1 to 255 characters")
        if not 1 <= len(self.password) <= 1000:
            raise ConfigurationError("the password must be 1 to 1000 characters")
