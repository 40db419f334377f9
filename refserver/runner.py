"""Serving the app with hypercorn, from Python or from the command line.

hypercorn is used because it speaks HTTP/2 over TLS (negotiated by ALPN),
which the client must be tested against. The listening socket is created
here, not by hypercorn, for two reasons: with `--port 0` the real port is
known before anything is printed, and the socket is a `TrackingListener`
so "drop" faults can cut real connections.

`RunningServer`, the child-process harness for tests, is re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

from refserver.admin_routes import ADMIN_TOKEN_HEADER, new_admin_token
from refserver.app import create_app
from refserver.cli import config_from_args, parse_args
from refserver.clock import Clock
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from refserver.netio import ConnectionRegistry, listen
from refserver.private import Made, Refused, write_new_private
from refserver.tls import ensure_tls_material

__all__ = ["RunningServer", "main", "serve", "serve_async"]

GRACEFUL_SECONDS = 1.0
"""How long a stopping server lets in-flight requests (say, a hang fault) finish."""


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8090,
          tls_dir: Path | None = None, ready: Callable[[str], None] | None = None, *,
          clock: Clock = time.time, stop_on_stdin_eof: bool = False,
          admin_token: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or stdin EOF when asked); blocks.

    `ready` is called with the base URL once the socket is listening. `/_admin` wants
    `admin_token` (None: a random one nobody knows, which closes `/_admin`).
    """
    asyncio.run(serve_async(config, host, port, tls_dir, ready, clock=clock,
                            stop_on_stdin_eof=stop_on_stdin_eof, admin_token=admin_token))


async def serve_async(config: ServerConfig, host: str = "127.0.0.1", port: int = 8090,
                      tls_dir: Path | None = None, ready: Callable[[str], None] | None = None,
                      *, clock: Clock = time.time, stop_on_stdin_eof: bool = False,
                      stop: asyncio.Event | None = None, admin_token: str | None = None,
                      ) -> None:
    """The body of `serve`, for callers with a loop; setting `stop` shuts it down."""
    registry = ConnectionRegistry()
    listener = listen(host, port, registry)
    try:
        await _serve_on(listener, registry, config, tls_dir, ready, clock,
                        stop or asyncio.Event(), stop_on_stdin_eof, admin_token)
    finally:
        listener.close()


async def _serve_on(listener: socket.socket, registry: ConnectionRegistry, config: ServerConfig,
                    tls_dir: Path | None, ready: Callable[[str], None] | None, clock: Clock,
                    stop: asyncio.Event, stop_on_stdin_eof: bool,
                    admin_token: str | None) -> None:
    _arrange_shutdown(stop, stop_on_stdin_eof)
    settings = HypercornConfig()
    settings.graceful_timeout = GRACEFUL_SECONDS
    settings.include_date_header = False  # the app dates answers on the server's own clock
    scheme = "http"
    if tls_dir is not None:
        material = ensure_tls_material(tls_dir)
        settings.certfile = str(material.cert_file)
        settings.keyfile = str(material.key_file)
        settings.alpn_protocols = ["h2", "http/1.1"]
        scheme = "https"
    secure: list[socket.socket] = [listener] if tls_dir is not None else []
    plain: list[socket.socket] = [] if tls_dir is not None else [listener]
    app = create_app(config, clock=clock, dropper=registry.drop, admin_token=admin_token)
    host, port = listener.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    if ready is not None:
        # Safe before hypercorn starts accepting: connections wait in the backlog.
        ready(f"{scheme}://{shown_host}:{port}")
    # hypercorn's ASGI type is narrower than Starlette's; the app is plain ASGI 3.
    framework = cast(ASGIFramework, app)
    await worker_serve(wrap_app(framework, settings.wsgi_max_body_size, "asgi"), settings,
                       sockets=Sockets(secure, plain, []), shutdown_trigger=stop.wait)


def _arrange_shutdown(stop: asyncio.Event, stop_on_stdin_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    if stop_on_stdin_eof:
        def watch() -> None:
            # Blocks until the parent closes the pipe or dies, whichever comes first.
            # os.read, not sys.stdin: a daemon thread parked inside a buffered
            # reader holds its lock and makes interpreter shutdown abort.
            while os.read(stdin_fd, 4096):
                pass
            loop.call_soon_threadsafe(stop.set)

        stdin_fd = sys.stdin.fileno()

        threading.Thread(target=watch, name="refserver-stdin-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m refserver`: parse flags, serve, and print the URL when ready.

    Everything the server will not use (a `--tls` directory or file another user could
    have planted or could read, an existing `--admin-token-file`) stops it before it
    listens: one line on stderr, exit 2.
    """
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"refserver: {exc}", file=sys.stderr)
        return 2
    token = new_admin_token()
    made: Made | None = None
    try:
        if args.tls is not None:
            ensure_tls_material(args.tls)
        if args.admin_token_file is not None:
            made = write_new_private(args.admin_token_file, f"{token}\n".encode())
    except Refused as exc:
        print(f"refserver: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"refserver: cannot prepare its files: {exc}", file=sys.stderr)
        return 2
    if made is None:
        print(f"refserver: admin token (send it as {ADMIN_TOKEN_HEADER} to /_admin): {token}",
              file=sys.stderr, flush=True)

    def announce(url: str) -> None:
        print(f"serving on {url}", flush=True)

    try:
        serve(config, args.host, args.port, args.tls, announce,
              stop_on_stdin_eof=args.stop_on_stdin_eof, admin_token=token)
    except OSError as exc:
        print(f"refserver: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        if made is not None:
            made.remove()
    return 0
