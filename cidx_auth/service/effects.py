"""The requests a flow makes of its driver. The flow never does I/O itself.

A flow is a generator: it yields one of these, and the driver sends back the
answer (or throws the project's error into the flow). The sync and async drivers
differ only in how they perform the few effects that wait.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.events import AuthEvent
from cidx_auth.domain.token import Session


@dataclass(frozen=True, slots=True)
class Now:
    """Answer: the client clock, in epoch seconds."""


@dataclass(frozen=True, slots=True)
class Draw:
    """Answer: a random float in [0, 1), for backoff jitter."""


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    event: AuthEvent


class LockResult(enum.Enum):
    HELD = "held"
    TIMED_OUT = "timed_out"
    UNAVAILABLE = "unavailable"
    """The lock cannot be had at all (storage broken): go on without it, degraded."""


@dataclass(frozen=True, slots=True)
class AcquireLock:
    """Answer: a :class:`LockResult`. A held lock is released when the flow ends."""

    timeout: float


@dataclass(frozen=True, slots=True)
class LoadSession:
    """Answer: the stored session or None. May throw :class:`StorageError`."""


@dataclass(frozen=True, slots=True)
class SaveSession:
    session: Session


@dataclass(frozen=True, slots=True)
class ClearSession:
    pass


@dataclass(frozen=True, slots=True)
class DiscardSession:
    """Remove the stored session if storage allows. Answer: whether it did; never throws.

    (A flow that ends a sub-generator by catching a thrown error loses CPython 3.11's
    trace events for its caller; asking without the risk of a throw avoids that.)
    """


@dataclass(frozen=True, slots=True)
class LoadCredentials:
    """Answer: stored credentials or None."""


@dataclass(frozen=True, slots=True)
class SaveCredentials:
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class ClearCredentials:
    pass


@dataclass(frozen=True, slots=True)
class Degraded:
    """Storage failed; the provider warns once and carries on in memory."""

    detail: str


@dataclass(frozen=True, slots=True)
class Admit:
    """Ask the breaker to let a network call through; it may throw :class:`CircuitOpen`."""


@dataclass(frozen=True, slots=True)
class Record:
    failed: bool
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Login:
    """Answer: a :class:`Grant`. Network effect: sync and async drivers differ."""

    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Refresh:
    """Answer: a :class:`Grant`. Network effect: sync and async drivers differ."""

    refresh_token: str = field(repr=False)


Effect = (
    Now | Draw | Sleep | Emit | AcquireLock | LoadSession | SaveSession | ClearSession
    | DiscardSession
    | LoadCredentials | SaveCredentials | ClearCredentials | Degraded | Admit | Record
    | Login | Refresh
)
