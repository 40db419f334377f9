"""Text a user typed, before it goes into a request."""

from __future__ import annotations


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be sent as JSON: a command line or input that was not UTF-8
    reaches Python as lone surrogates, which no encoder accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
