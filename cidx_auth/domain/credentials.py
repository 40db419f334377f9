"""Stored login credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.text import is_utf8


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and its password; the password never appears in ``repr``.

    The username is kept without the spaces around it, as the CIDX server trims it (a
    name typed as ``" alice"`` is stored and sent as ``"alice"``); the password is kept
    exactly as given, since a space may be part of it.
    """

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "username", trimmed_username(self.username))
        if not 1 <= len(self.password) <= 1000:  # the server's limit (server-contract)
            raise ConfigurationError("the password must be 1 to 1000 characters")
        if not is_utf8(self.password):
            raise ConfigurationError("the password is not valid UTF-8 text (check the "
                                     "terminal's encoding)")


def trimmed_username(username: str) -> str:
    """``username`` without surrounding whitespace, refused (exit 2) when nothing is
    left or it is longer than the server's 255 characters."""
    name = username.strip()
    if not name:
        raise ConfigurationError("the username is empty (or only spaces): give the CIDX "
                                 "user's name")
    if not is_utf8(name):
        raise ConfigurationError("the username is not valid UTF-8 text (check the "
                                 "terminal's encoding)")
    if len(name) > 255:
        raise ConfigurationError("the username must be 1 to 255 characters")
    return name
