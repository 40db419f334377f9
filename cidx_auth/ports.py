"""The ports: what the core needs from the world, as small Protocols.

Adapters in ``adapters/`` implement them; the container in ``cidx_auth.app.container``
plugs them in. Every port is blocking: the renewal is rare and short, and async callers
await it on a worker thread (see ``cidx_auth.service.provider``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.events import AuthEvent
from cidx_auth.domain.token import Grant, Session


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time in epoch seconds, and a way to wait."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


@runtime_checkable
class TokenStore(Protocol):
    """Where the session lives between processes.

    ``load`` returns None for "no session" and for a damaged one (after setting it
    aside); it raises :class:`StorageError` only when storage itself fails.
    ``lock`` is exclusive across processes; entering it raises :class:`LockTimeout`.
    """

    def load(self) -> Session | None: ...
    def save(self, session: Session) -> None: ...
    def clear(self) -> None: ...
    def lock(self, timeout: float) -> AbstractContextManager[None]: ...


@runtime_checkable
class CredentialStore(Protocol):
    """The username and password used to log in again when refresh fails."""

    def load(self) -> Credentials | None: ...
    def save(self, credentials: Credentials) -> None: ...
    def clear(self) -> None: ...


@runtime_checkable
class Cipher(Protocol):
    """Authenticated encryption; ``decrypt`` raises :class:`CorruptStore` on any failure."""

    def encrypt(self, plaintext: bytes) -> bytes: ...
    def decrypt(self, ciphertext: bytes) -> bytes: ...


@runtime_checkable
class AuthGateway(Protocol):
    """The server's login and refresh, blocking. Raises only :class:`CidxAuthError`."""

    def login(self, credentials: Credentials) -> Grant: ...
    def refresh(self, refresh_token: str) -> Grant: ...


@runtime_checkable
class StateStore(Protocol):
    """Breaker state and counters shared by every process of a project.

    ``update`` applies ``change`` atomically (across processes for a shared store) and
    returns the new state. ``change`` must be pure: a store may call it more than once,
    and skips the write when it returns an equal state.

    Every store calls ``change`` at least once, whatever happens to the storage (a lock
    that cannot be taken, a file that cannot be read or written), and returns what its
    last call returned. Callers rely on that: a value ``change`` computes on the way
    (the breaker's decision, the state before) is set when ``update`` returns.
    """

    def read(self) -> ClientState: ...
    def update(self, change: Callable[[ClientState], ClientState]) -> ClientState: ...


@runtime_checkable
class EventSink(Protocol):
    """Receives every decision the provider makes; must not raise."""

    def emit(self, event: AuthEvent) -> None: ...
