"""Stored login credentials: the server's length limits from both sides, text that is not
UTF-8, and the messages a user reads when a name or password is refused (exit 2)."""

from __future__ import annotations

import pytest

from cidx_auth.domain.credentials import Credentials, trimmed_username
from cidx_auth.domain.errors import ConfigurationError

NOT_UTF8 = "caf\udce9"  # a Latin-1 byte from the terminal, as Python decodes it


@pytest.mark.parametrize("length", [1, 1000], ids=["shortest", "longest"])
def test_a_password_of_1_to_1000_characters_is_kept(length: int) -> None:
    password = "p" * length
    assert Credentials("alice", password).password == password


@pytest.mark.parametrize("length", [0, 1001], ids=["empty", "one-too-many"])
def test_a_password_outside_1_to_1000_characters_is_a_usage_error(length: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials("alice", "p" * length)
    assert str(caught.value) == "the password must be 1 to 1000 characters"
    assert caught.value.exit_code == 2


def test_a_password_that_is_not_utf8_is_refused_pointing_at_the_terminal() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials("alice", NOT_UTF8)
    assert str(caught.value) == ("the password is not valid UTF-8 text (check the "
                                 "terminal's encoding)")


def test_an_empty_username_message_asks_for_the_cidx_users_name() -> None:
    with pytest.raises(ConfigurationError) as caught:
        trimmed_username("   ")
    assert str(caught.value) == ("the username is empty (or only spaces): give the CIDX "
                                 "user's name")


def test_a_username_that_is_not_utf8_is_refused_pointing_at_the_terminal() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials(NOT_UTF8, "secret")
    assert str(caught.value) == ("the username is not valid UTF-8 text (check the "
                                 "terminal's encoding)")


@pytest.mark.parametrize("typed", ["u" * 255, "  " + "u" * 255 + "\n"],
                         ids=["255", "255-once-trimmed"])
def test_a_username_of_255_characters_once_trimmed_is_kept(typed: str) -> None:
    assert trimmed_username(typed) == "u" * 255


def test_a_username_of_256_characters_is_a_usage_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials("u" * 256, "secret")
    assert str(caught.value) == "the username must be 1 to 255 characters"
    assert caught.value.exit_code == 2


def test_the_password_stays_out_of_repr() -> None:
    shown = repr(Credentials("alice", "hunter2-secret"))
    assert "alice" in shown and "hunter2-secret" not in shown
