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

import httpx
import pytest

from adapters.http_limits import ATTEMPT, Attempt, Overdue, TooLate


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


# --- the deadline's arithmetic, on a fake clock ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_phase_gets_at_most_what_remains_and_never_zero() -> None:
    clock = Clock()
    attempt = Attempt(30.0, clock)
    assert attempt.left() == 30.0
    assert attempt.timeouts(5.0, 60.0, 10.0, 40.0) == httpx.Timeout(
        connect=5.0, read=30.0, write=10.0, pool=30.0)
    clock.now += 28.0
    assert attempt.left() == 2.0
    assert attempt.timeouts(5.0, 60.0, 1.0, 40.0) == httpx.Timeout(
        connect=2.0, read=2.0, write=1.0, pool=2.0)
    clock.now += 10.0  # past the deadline: a timeout of 0 would mean "do not wait"
    assert attempt.left() == -8.0
    assert attempt.timeouts(5.0, 60.0, 10.0, 40.0) == httpx.Timeout(0.001)


def test_the_deadline_is_checked_and_says_how_long_it_was() -> None:
    clock = Clock()
    attempt = Attempt(2.5, clock)
    attempt.check()
    clock.now += 2.0
    attempt.check()
    clock.now += 0.5  # exactly at the deadline: nothing is left
    assert attempt.left() == 0.0
    with pytest.raises(Overdue) as caught:
        attempt.check()
    assert str(caught.value) == "no complete answer within 2.5 s"
    assert isinstance(caught.value, httpx.ReadTimeout)  # what httpx callers already catch


def test_nothing_is_sent_after_the_deadline_and_sent_says_when_it_was() -> None:
    clock = Clock()
    attempt = Attempt(1.0, clock)
    assert attempt.sent is False
    attempt.trace("http11.send_request_headers.started", {})
    assert attempt.sent is True
    late = Attempt(1.0, clock)
    clock.now += 1.0
    with pytest.raises(TooLate):
        late.trace("http11.send_request_headers.started", {})
    assert late.sent is False


def test_the_extensions_put_the_attempt_in_charge() -> None:
    attempt = Attempt(1.0, Clock())
    sync, asynchronous = attempt.extensions(), attempt.extensions(asynchronous=True)
    assert sync == {"trace": attempt.trace, ATTEMPT: attempt}
    assert asynchronous == {"trace": attempt.atrace, ATTEMPT: attempt}


def test_a_stream_without_a_socket_is_not_watched() -> None:
    before = set(threading.enumerate())
    with Attempt(1.0, Clock()) as attempt:
        attempt.watch(None)
        attempt.watch(Stream(None))  # type: ignore[arg-type]
        attempt.trace("connection.connect_tcp.complete", {"return_value": None})
        assert set(threading.enumerate()) == before


def test_leaving_the_attempt_stops_its_watchdog_and_closes_only_its_duplicate() -> None:
    first, second = socket.socketpair()
    with first, second:
        before = set(threading.enumerate())
        with Attempt(60.0, Clock()) as attempt:
            attempt.trace("connection.connect_tcp.complete", {"return_value": Stream(first)})
            watchdogs = [thread for thread in threading.enumerate()
                         if thread not in before and isinstance(thread, threading.Timer)]
            assert len(watchdogs) == 1
            attempt.watch(Stream(second))  # one socket per attempt: a second is ignored
            assert [thread for thread in threading.enumerate()
                    if thread not in before and isinstance(thread, threading.Timer)] == watchdogs
        watchdogs[0].join(timeout=10)
        assert not watchdogs[0].is_alive()  # cancelled, long before its 60 s
        first.sendall(b"still open")  # httpcore's own socket is left to httpcore
        assert second.recv(16) == b"still open"
