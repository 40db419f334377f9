"""A "proxy" on 127.0.0.1 that records the bytes it receives and forwards nothing.

Each connection is read up to the end of its request head (a CONNECT, or a proxied
request's head), answered ``502`` and closed: nothing it hears leaves the machine.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

PROXY_USER, PROXY_PASSWORD = "squid-user", "pr0xy-pa55"
VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
             "all_proxy")
"""Every variable that can name a proxy for an http:// or https:// server."""


class RecordingProxy(socketserver.ThreadingTCPServer):
    """Records what each connection sends up to the end of its request head, then
    answers 502 and closes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Record)
        self.received = bytearray()
        self.connections = 0
        self.mutex = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{self.server_address[1]}"

    @property
    def shown(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Record(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        proxy = self.server
        assert isinstance(proxy, RecordingProxy)
        connection: socket.socket = self.request
        with proxy.mutex:
            proxy.connections += 1
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(65536)
            if not chunk:
                break
            head += chunk
            with proxy.mutex:
                proxy.received += chunk
        connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")


@contextmanager
def recording_proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy() as running:
        thread = threading.Thread(target=running.serve_forever, daemon=True)
        thread.start()
        try:
            yield running
        finally:
            running.shutdown()
