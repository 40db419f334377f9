"""A listening socket that remembers its connections, so faults can cut them.

ASGI hides the connection from the app: an app that returns without
answering gets a 500 from the server, not a closed socket. To simulate a
network drop, the runner listens on a `TrackingListener`, which records
every accepted socket by its peer address. The ASGI scope carries that same
address as `client`, so the fault middleware can find the socket behind a
request and shut it down. asyncio's selector loop accepts through the
listener's own `accept()` method, which is what makes this hook possible.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any

from starlette.types import Scope

BACKLOG = 128


class ConnectionRegistry:
    """Accepted sockets by peer address; closed sockets fall out on their own."""

    def __init__(self) -> None:
        # Weak values: the event loop's transport owns each socket; when it is
        # done with one, the entry disappears without any bookkeeping here.
        self._by_peer: weakref.WeakValueDictionary[tuple[str, int], socket.socket] = (
            weakref.WeakValueDictionary()
        )

    def remember(self, peer: Any, conn: socket.socket) -> None:
        """Note that `conn` talks to `peer`."""
        self._by_peer[(str(peer[0]), int(peer[1]))] = conn

    def drop(self, scope: Scope) -> bool:
        """Shut down the connection behind `scope`; False if it cannot be found."""
        client = scope.get("client")
        if not client:
            return False
        conn = self._by_peer.get((str(client[0]), int(client[1])))
        if conn is None:
            return False
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        return True


class TrackingListener(socket.socket):
    """A listening socket that reports each accepted connection to a registry."""

    registry: ConnectionRegistry

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept as usual, then record the new connection."""
        conn, peer = super().accept()
        self.registry.remember(peer, conn)
        return conn, peer


def listen(host: str, port: int, registry: ConnectionRegistry) -> TrackingListener:
    """Bind and listen on `host:port` (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio only turns Nagle off (TCP_NODELAY) for sockets that say
    # so, and with Nagle on every small response waits ~40 ms for a delayed ACK.
    listener = TrackingListener(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.registry = registry
    # Restarting on the same port right after a stop must not trip on TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener
