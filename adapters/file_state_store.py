"""Breaker state and counters in ``.code-indexer/.state``, shared by every process.

Format (plain JSON, no secrets, written atomically with mode 0600)::

    {"version": 1,
     "breaker": {"circuit": "closed", "failures": 0, "open_until": 0.0, "probe_until": null,
                 "open_period": 30.0},
     "counters": {"logins": 1, "refreshes": 4},
     "last_refresh": 1800000123.5}

``open_period`` (the breaker's last open period, which the next failed probe doubles) came
after version 1 was first written; a file without it reads as 30 s, and an older
cidx-auth ignores it, so the version stays 1.

A time no clock can show (NaN, infinity, before 1970, after the year 9999), an open
period longer than any ``Retry-After`` is honoured, or a count that is not a whole number
from 0 to ``MAX_COUNT`` (:mod:`cidx_auth.domain.bounds`; a number of over 4,300 digits,
which ``json`` refuses to read, included) makes the file damaged, read as the default
state. A time ahead but possible needs no clamp here: the breaker treats an
``open_until`` beyond its own rules as ended (:mod:`cidx_auth.domain.breaker`).

``read`` is one ``stat`` when nothing changed since the last read, and takes no lock.
``update`` is read-modify-write under its own lock (``.state.lock``, separate from the
token lock so that counting an event never waits behind a refresh), and writes nothing
when the change leaves the state as it was; a change that leaves the state as it is
now does not even take the lock.

This state steers the breaker but guards no secret, so a failure here must never stop a
token from being handed out: a damaged file reads as the default state, and when the
lock or the disk fails, the change is applied to the last known state in memory and a
single WARNING says the state is no longer persisted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.file_io import Identity, read_private, stat_identity, warn, write_private
from adapters.file_lock import file_lock
from cidx_auth.domain.bounds import count, moment
from cidx_auth.domain.breaker import FIRST_OPEN_PERIOD, MAX_RETRY_AFTER, BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CorruptStore, LockTimeout, StorageError

STATE_FORMAT_VERSION = 1
STATE_LOCK_TIMEOUT = 0.5


class FileStateStore:
    """The ``StateStore`` port over a small JSON file and its own lock file."""

    def __init__(
        self,
        path: Path,
        lock_path: Path,
        *,
        lock_timeout: float = STATE_LOCK_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.lock_path = lock_path
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._last = ClientState()
        self._seen: Identity | None = None
        self._mutex = threading.Lock()
        self._warned = False

    def read(self) -> ClientState:
        """The persisted state (the last known one if the file cannot be read)."""
        try:
            return self._read_file()
        except StorageError as error:
            self._warn(error)
            return self._last

    def update(self, change: Callable[[ClientState], ClientState]) -> ClientState:
        """Apply ``change`` atomically across processes; returns the resulting state.

        ``change`` must be a pure function of the state: it may be called twice.
        """
        # Most changes are no-ops (a closed breaker admitting a call, an event that is not
        # counted). A no-op on the state as it is now needs no write, so no lock either:
        # it is as if the update happened at the moment of the read.
        current = self.read()
        unchanged = change(current)
        if unchanged == current:
            return unchanged
        lock = file_lock(self.lock_path, self._lock_timeout, "the state lock")
        try:
            lock.__enter__()
        except (StorageError, LockTimeout) as error:
            self._warn(error)
            return self._apply(change, self.read(), persist=False)
        try:
            try:
                current = self._read_file()
            except StorageError as error:
                self._warn(error)
                current = self._last
            return self._apply(change, current, persist=True)
        finally:
            lock.__exit__(None, None, None)

    def _apply(
        self, change: Callable[[ClientState], ClientState], current: ClientState, *, persist: bool
    ) -> ClientState:
        new = change(current)
        if persist and new != current:
            try:
                self._write(new)
            except StorageError as error:
                self._warn(error)
        self._last = new
        return new

    def _read_file(self) -> ClientState:
        seen = stat_identity(self.path)
        if seen is not None and seen == self._seen:
            return self._last  # nothing changed: skip the read and the parse
        found = None
        try:
            found = read_private(self.path)
        except CorruptStore as damage:
            self._warn(damage)
        if found is None:
            state, seen = ClientState(), None
        else:
            state = _parse(found[0])
            seen = found[1]
        with self._mutex:
            self._last, self._seen = state, seen
        return state

    def _write(self, state: ClientState) -> None:
        data = json.dumps(state_to_dict(state), separators=(",", ":")).encode()
        # Under the state lock every writer of this file is excluded: sweep all temps.
        written = write_private(self.path, data, sweep_young=True, now=self._clock())
        with self._mutex:
            self._last, self._seen = state, written

    def _warn(self, error: StorageError | LockTimeout) -> None:
        if not self._warned:
            self._warned = True
            warn("breaker state and counters are not persisted: %s", error)


def state_to_dict(state: ClientState) -> dict[str, Any]:
    """The state as the JSON document above."""
    breaker = state.breaker
    return {
        "version": STATE_FORMAT_VERSION,
        "breaker": {
            "circuit": breaker.circuit.value,
            "failures": breaker.failures,
            "open_until": breaker.open_until,
            "probe_until": breaker.probe_until,
            "open_period": breaker.open_period,
        },
        "counters": dict(state.counters),
        "last_refresh": state.last_refresh,
    }


def _parse(data: bytes) -> ClientState:
    try:
        return decode_state(data)
    except CorruptStore:
        warn("the state file is damaged; starting from the default state")
        return ClientState()


def decode_state(data: bytes) -> ClientState:
    """The state in the file's bytes; :class:`CorruptStore` if they are not one."""
    try:
        return state_from_dict(json.loads(data))
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
        raise CorruptStore("the state file is damaged") from None


def state_from_dict(document: Any) -> ClientState:
    """Rebuild the state; raises ValueError (or TypeError, KeyError, OverflowError) if
    anything is off."""
    if not isinstance(document, dict) or document.get("version") != STATE_FORMAT_VERSION:
        raise ValueError("unknown state format")
    raw = document["breaker"]
    breaker = BreakerState(
        Circuit(raw["circuit"]),
        count(raw["failures"]),
        moment(raw["open_until"]),
        None if raw["probe_until"] is None else moment(raw["probe_until"]),
        moment(raw.get("open_period", FIRST_OPEN_PERIOD), MAX_RETRY_AFTER),
    )
    counters = document["counters"]
    if not isinstance(counters, dict) or not all(isinstance(k, str) for k in counters):
        raise ValueError("bad counters")
    last = document["last_refresh"]
    return ClientState(
        breaker,
        {name: count(value) for name, value in counters.items()},
        None if last is None else moment(last),
    )
