"""Event sinks: to the log, to counters in memory, and to the persisted counters."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from cidx_auth.domain.events import COUNTED, AuthEvent, EventKind, sink_failure
from cidx_auth.ports import EventSink, StateStore

_LEVELS = {
    # WARNING only for what the user should act on although the command succeeds. What
    # the command gets past (a circuit that opens, or half-opens and closes; a renewal
    # that waited out its lock and kept the still-valid token) is INFO: if it stops the
    # command, the error says so itself.
    EventKind.STORAGE_DEGRADED: logging.WARNING,
    EventKind.LOGIN_REFUSED: logging.INFO,  # the caller reports it as the error itself
    EventKind.LOCK_TIMEOUT: logging.INFO,
    EventKind.REFRESH_FAILED: logging.INFO,
    EventKind.BREAKER: logging.INFO,
    EventKind.RETRY: logging.INFO,
    EventKind.REFRESH_REFUSED: logging.INFO,
    EventKind.REPLAY_REPORTED: logging.WARNING,  # news to the user: the token may be copied
}


class LoggingSink:
    """Logs each event; events hold no secrets, so neither does the log."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("cidx_auth")

    def emit(self, event: AuthEvent) -> None:
        level = _LEVELS.get(event.kind, logging.DEBUG)
        token = f" [token {event.fingerprint}]" if event.fingerprint else ""
        self._logger.log(level, "%s: %s%s", event.kind.value, event.detail, token)


class CountingSink:
    """Counts events by kind and keeps them, for tests and the demo."""

    def __init__(self) -> None:
        self.counts: Counter[EventKind] = Counter()
        self.events: list[AuthEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuthEvent) -> None:
        with self._lock:
            self.counts[event.kind] += 1
            self.events.append(event)

    def __getitem__(self, kind: EventKind) -> int:
        return self.counts[kind]


class StateCountingSink:
    """Adds counted events to the persisted state, for ``cidx-auth status``."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def emit(self, event: AuthEvent) -> None:
        if event.kind in COUNTED:  # the rest would only cost a read of the state file
            self._state.update(lambda state: state.counted(event))


class FanOutSink:
    """Sends every event to several sinks; one failing sink does not silence the rest,
    nor stop the command: it costs one WARNING line, never a traceback."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = sinks

    def emit(self, event: AuthEvent) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception as error:  # an observer must never break the command
                logging.getLogger("cidx_auth").warning("%s", sink_failure(event, sink, error))
