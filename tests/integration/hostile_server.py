"""A hostile CIDX server on loopback: each path answers the way a test chooses.

Plain sockets and threads, HTTP/1.1 with ``Connection: close``, so a test controls every
byte: bombs, endless bodies, drips, absurd headers, echoes. ``grant`` answers a login or
refresh with a well-formed (unsigned) RS256 token, enough for the CLI to log in and go
on to the call under test; the client never checks signatures, the server would.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    body: bytes


Answer = Callable[[socket.socket, Request, threading.Event], None]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(lifetime: int = 600) -> str:
    """A token the client accepts (RS256, ``exp``), signed by nobody."""
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    return ".".join([_b64(b'{"alg":"RS256","typ":"JWT"}'), _b64(json.dumps(claims).encode()),
                     _b64(b"not-a-signature")])


def head(status: int, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", "Connection: close",
             "Content-Type: application/json"]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def respond(status: int, body: bytes | str = b"", **headers: str) -> Answer:
    """The same whole answer every time (``Retry_After=`` for ``Retry-After``)."""
    data = body.encode() if isinstance(body, str) else body
    named = {key.replace("_", "-"): value for key, value in headers.items()}

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(head(status, named, len(data)) + data)

    return answer


def grant(conn: socket.socket, request: Request, stop: threading.Event) -> None:
    """A successful login or refresh."""
    body = json.dumps({"access_token": jwt(), "refresh_token": uuid.uuid4().hex,
                       "token_type": "bearer", "expires_in": 600}).encode()
    conn.sendall(head(200, length=len(body)) + body)


@functools.cache
def gzip_bomb(size: int = 2**30) -> bytes:
    """``size`` zero bytes gzipped (1 GiB in about 1 MB), built in well under a second.

    One mebibyte of zeros is deflated once, ended with a full flush so that the block
    stands alone, and repeated; only the checksum is computed over the whole.
    """
    block = bytes(2**20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    trailer = struct.pack("<II", crc, size % 2**32)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + deflated * (size // len(block)) \
        + last + trailer


def endless(total: int, status: int = 200, chunk: int = 2**20) -> Answer:
    """An answer of ``total`` bytes of JSON-ish filler, sent as fast as it is read."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(head(status, length=total) + b"[")
        sent, block = 1, b" " * chunk
        while sent < total and not stop.is_set():
            conn.sendall(block[: total - sent])
            sent += chunk

    return answer


def drip(every: float, status_line: bool = True) -> Answer:
    """A 200 whose body (or, without ``status_line``, whose headers) come a byte per ``every``."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(head(200, length=10**6) + b"[" if status_line else b"HTTP/1.1 200 OK\r\nX: ")
        while not stop.wait(every):
            conn.sendall(b" ")

    return answer


_NOT_FOUND = respond(404, '{"detail": "Not Found"}')


@dataclass
class HostileServer:
    """Serves ``routes`` (path -> answer) on 127.0.0.1 until closed; 404 elsewhere."""

    routes: dict[str, Answer]
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

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
                request = _read_request(conn)
                self.requests.append(request)
                route = self.routes.get(request.path.split("?")[0], _NOT_FOUND)
                route(conn, request, self._stop)
            except OSError:
                pass  # the client hung up, as these tests expect it to


def _read_request(conn: socket.socket) -> Request:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise ConnectionResetError
        data += more
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return Request(method, path, body)
