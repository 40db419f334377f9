"""The CLI's error contract: an exit code and a message, never a traceback."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cidx_auth.app.cli import handled
from cidx_auth.domain.errors import (
    CircuitOpen,
    InvalidCredentials,
    LockTimeout,
    ServerUnavailable,
)


def command_raising(error: BaseException) -> click.Command:
    @click.command()
    @handled
    def boom() -> None:
        raise error

    return boom


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (InvalidCredentials("the server refused the username or password"), 3, "refused"),
        (ServerUnavailable("cannot reach http://127.0.0.1:9"), 4, "cannot reach"),
        (CircuitOpen(1_800_000_000.0), 4, "next attempt after"),
        (LockTimeout("held the token lock"), 4, "token lock"),
        (RuntimeError("secret-ish internals"), 1, "unexpected error (RuntimeError)"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_errors_become_exit_codes(error: BaseException, code: int, text: str) -> None:
    result = CliRunner().invoke(command_raising(error))
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output
    assert "secret-ish" not in result.output
