"""When the demo's reference server does not start, the demo says why in the server's
own words (its last stderr line), not "unexpected error" (issue 22, item 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cidx_auth.app import demo
from cidx_auth.domain.errors import TransportError

pytestmark = pytest.mark.slow

FAILING = ("import sys; sys.stderr.write('Traceback (most recent call last):\\n  ...\\n"
           "OSError: [Errno 98] address in use \\x1b[2J' + 'x' * 500 + '\\n'); sys.exit(1)")


def test_a_server_that_does_not_start_is_named_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "server_argv", lambda token_file: [sys.executable, "-c", FAILING])
    with pytest.raises(TransportError) as raised:
        demo.Server(tmp_path)
    message = str(raised.value)
    assert raised.value.exit_code == 4
    assert message.startswith("the demo's reference server did not start: OSError: [Errno 98] "
                              "address in use [2J")
    assert "\x1b" not in message and message.endswith("...")
    assert len(message) < 400


def test_a_server_that_says_nothing_is_reported_as_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "server_argv", lambda token_file: [sys.executable, "-c", "0"])
    with pytest.raises(TransportError, match=r"did not start: it said nothing$"):
        demo.Server(tmp_path)
