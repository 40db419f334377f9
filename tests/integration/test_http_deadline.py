"""The deadline D against real slow servers on loopback: every auth request ends by D.

A small socket server answers in one slow way per test (dripping the body, dripping the
headers, never answering, never finishing the TLS handshake); the reference server's
``hang`` fault covers TLS with HTTP/2. D is 1 s here. What is asserted is that the request
ends with the deadline's own error (the slow servers never finish by themselves within the
suite's timeout), not before D, and how; and that it ends by D + :data:`LATE`, a margin
generous enough for a shared, noisy machine (5 s, five times D) that still catches a
watchdog firing late (a mutant that fired it 20 s late survived the lower bound alone).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import HttpxGateway
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ServerUnavailable
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from refserver.tls import TlsMaterial, ensure_tls_material
from tests.integration.http_support import PASSWORD, settings_for

D = 1.0
LATE = 5.0
"""How late past D a request may end: scheduling on a loaded machine, not a slow watchdog."""
DRIP = 0.2
"""Seconds between dripped bytes: well inside every per-read timeout, so only D can stop it."""
ALICE = Credentials("alice", PASSWORD)
REFRESH_TOKEN = "r" * 86

Script = Callable[[socket.socket, threading.Event], None]


class SlowServer:
    """A loopback server running ``script`` on each connection, in threads of its own."""

    def __init__(self, script: Script, *, read_request: bool = True,
                 tls: TlsMaterial | None = None) -> None:
        self._script, self._read_request = script, read_request
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls.cert_file, tls.key_file)
            self._tls.set_alpn_protocols(["http/1.1"])
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self._tls is not None:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                if self._read_request:
                    _read_request(conn)
                self._script(conn, self._stop)
            except OSError:
                pass  # the client hung up: what these tests expect it to do


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(4096) or b" " * length


def drip(conn: socket.socket, stop: threading.Event, head: bytes) -> None:
    conn.sendall(head)
    while not stop.wait(DRIP):
        conn.sendall(b" ")


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    drip(conn, stop, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    drip(conn, stop, b"HTTP/1.1 200 OK\r\nX-Slow: ")


def say_nothing(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait()


@pytest.fixture
def slow() -> Iterator[Callable[..., SlowServer]]:
    servers: list[SlowServer] = []

    def start(script: Script, **options: Any) -> SlowServer:
        servers.append(SlowServer(script, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def timed_refresh(settings: HttpSettings) -> tuple[ServerUnavailable, float]:
    """Refresh against a slow server; the error and how long it took to come."""
    gateway = HttpxGateway(settings)
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnavailable) as caught:
            gateway.refresh(REFRESH_TOKEN)
        return caught.value, time.monotonic() - started
    finally:
        gateway.close()


@pytest.mark.parametrize("script", [drip_body, drip_headers, say_nothing])
def test_a_slow_answer_ends_by_d_as_a_lost_answer(
    slow: Callable[..., SlowServer], script: Script
) -> None:
    server = slow(script)
    error, took = timed_refresh(HttpSettings(server.url(), auth_deadline=D))
    assert D - 0.05 <= took <= D + LATE
    assert str(error) == f"{server.url()} did not finish the refresh within 1 s; try again later"
    assert error.reached and REFRESH_TOKEN not in str(error)


def test_a_tls_handshake_never_finished_ends_by_d_with_nothing_sent(
    slow: Callable[..., SlowServer],
) -> None:
    server = slow(say_nothing, read_request=False)
    error, took = timed_refresh(HttpSettings(server.url("https"), auth_deadline=D))
    assert D - 0.05 <= took <= D + LATE
    assert "did not finish the refresh within 1 s" in str(error)
    assert not error.reached


@pytest.mark.parametrize("script", [drip_body, drip_headers])
def test_a_dripping_answer_over_tls_ends_by_d(
    slow: Callable[..., SlowServer], script: Script, tmp_path: Path
) -> None:
    material = ensure_tls_material(tmp_path)
    server = slow(script, tls=material)
    settings = HttpSettings(server.url("https"), ca_bundle=material.ca_file, auth_deadline=D)
    error, took = timed_refresh(settings)
    assert D - 0.05 <= took <= D + LATE
    assert "did not finish the refresh within 1 s" in str(error) and error.reached


@pytest.fixture(scope="module")
def reference() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": PASSWORD}), tls=True) as running:
        yield running


def test_a_hanging_reference_server_ends_by_d_over_tls(reference: RunningServer) -> None:
    reference.reset()
    reference.inject("hang", seconds=10, paths=["/auth/login"])
    gateway = HttpxGateway(settings_for(reference, auth_deadline=D))
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnavailable, match="did not finish the login within 1 s") \
                as caught:
            gateway.login(ALICE)
        took = time.monotonic() - started
    finally:
        gateway.close()
    assert D - 0.05 <= took <= D + LATE  # the hang is 10 s: only the deadline ends it sooner
    assert caught.value.reached
    assert PASSWORD not in str(caught.value)
