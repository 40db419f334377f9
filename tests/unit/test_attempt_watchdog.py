"""The deadline's watchdog on a socket that is already gone: quiet, no thread traceback.

The watchdog shuts the request's socket when the deadline passes. By then the server
may have closed the connection, and shutting it fails (ENOTCONN): that is the end the
watchdog wanted, so it must not print an "Exception in thread" traceback in the
user's terminal.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Any

import pytest

from adapters.http_limits import Attempt


class Stream:
    """What httpcore hands the trace hook: a network stream with its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self._sock if name == "socket" else None


def test_a_deadline_on_a_socket_that_is_not_connected_passes_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    before = set(threading.enumerate())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unconnected:
        with pytest.raises(OSError, match=os.strerror(errno.ENOTCONN)):  # what it meets
            unconnected.shutdown(socket.SHUT_RDWR)
        clock = iter([0.0] + [5.0] * 100)  # the deadline of 1 s has passed at once
        with Attempt(1.0, lambda: next(clock)) as attempt:
            attempt.watch(Stream(unconnected))
            watchdogs = [thread for thread in threading.enumerate()
                         if thread not in before and isinstance(thread, threading.Timer)]
            assert len(watchdogs) == 1
            watchdogs[0].join(timeout=10)
            assert not watchdogs[0].is_alive()
    assert failures == []
