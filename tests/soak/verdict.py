"""What a soak run recorded, and its verdict: pure functions over the records, no I/O.

A :class:`Call` is one command or library call as a worker saw it; a :class:`Window` is
one injected fault, from when it began to when it was undone. A failed call counts
against the run unless :func:`excuse` finds a reason outside the client for it:

- the soak signalled the process itself (``killed``);
- it overlapped a window where the server was down or answering 503/429 (``effect``
  ``unavailable``), or it was stopped by this machine's circuit breaker soon enough after
  such a window that the breaker, opened by it, had not probed again yet (the open period
  starts at 30 s and doubles per failed probe, so it depends on how long the outage
  lasted, plus any ``Retry-After`` the window sent);
- the soak killed a process of that host at once (``effect`` ``killed``), and the call
  was refused within 90 s because "another command is probing the server now": the
  killed process may have held the half-open probe, which the breaker presumes lost
  only after 90 s (a process killed outright cannot give it back);
- it was ``token --refresh`` and its store could not be read (Redis failing over): the
  command reads the stored token first, to mark it refused, and stops with exit 5 when
  it cannot, although a login would have given it a new token (reported as such: the
  other commands ride such an outage out);
- the server's login limit refused it while that host's token store could not be written
  (``effect`` ``no-store``: a read-only or immutable checkout; Redis failing over, until
  the old primary has rejoined, or its replica resynchronising: behind Sentinel no write
  under the lock counts without a replica's confirmation): then
  every process must log in for itself, as README says ("each command needs one auth call
  of its own"), and the server's per-user bucket (10 logins, one back every 6 s) refuses
  the rest; no valid path existed for those processes.

Every other failure is "failed while a valid path existed", and the run misses its goal.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

UNAVAILABLE = "unavailable"
"""A window's effect: the server could not answer (stopped, or 503/429 to everything)."""
NO_STORE = "no-store"
"""A window's effect: a host's token store could not be written or reached."""
KILLED = "killed"
"""A window's effect: the soak ended processes of these hosts at once (SIGKILL, or SIGTERM
to a library worker, which has no handler), so one may have died holding the breaker's
half-open probe."""

BREAKER_LINE = "circuit breaker"
"""What the CLI's (and a `CircuitOpen`'s) message says when the breaker stopped a call."""
LOGIN_LIMIT_LINE = "is limiting login attempts"
"""What a login refused by the server's per-user bucket (429) says."""
PROBE_OUT_LINE = "another command is probing the server now"
"""What a call refused because the half-open probe is out says."""
UNREADABLE_LINE = "could not read the session"
"""What a store that cannot be read says (the Redis store's StorageError)."""
TOKEN_REFRESH = "token --refresh"
"""The kind of the call the mid-refresh faults provoke a refresh with."""

BREAKER_FIRST_OPEN = 30.0
BREAKER_MAX_OPEN = 300.0
"""The client's open periods (`BreakerConfig`), written out again: the soak judges them."""
PROBE_TIMEOUT = 90.0
"""How long the breaker waits before it presumes a probe that never reported lost."""
LOGIN_REFILL_GRACE = 60.0
"""How long after a store window the server's login bucket may still be empty: 10
logins at one back every 6 s (`refserver.config`)."""
SLACK = 2.0
OUTAGE_EXIT = 4
"""The exit code (and a library error's ``exit_code``) of "the server is unavailable":
unreachable, 5xx, 429. Only that failure is the outage's; a refused token (3), a store
that could not be written (5) or a crash (1) during an outage is the client's."""
"""Seconds of slack on each side of a window: the driver records a window's edges just
before and after it acts, and processes read the wall clock a little apart."""


_ENTERED_MAIN = re.compile(r'cidx_auth[/\\]app[/\\]entry\.py", line \d+, in main')


def startup_interrupt(stderr: str) -> bool:
    """Whether ``stderr`` is a Ctrl-C that landed before cidx-auth's entry point ran:
    Python still starting (``site``, the installed package's path hooks) or importing
    the entry module, whose ``main`` is what turns SIGINT into "cidx-auth: interrupted".
    Nothing of cidx-auth's has run there, so nothing has been sent or written; the
    traceback is Python's, which no code of the package can catch (the console script
    that imports it is pip's). The soak reports these apart from the tracebacks."""
    lines = [line.strip() for line in stderr.strip().splitlines()]
    return bool(lines) and lines[-1] == "KeyboardInterrupt" and \
        "Traceback (most recent call last)" in stderr and not _ENTERED_MAIN.search(stderr)


@dataclass(frozen=True, slots=True)
class Call:
    """One call as a worker saw it. `code` is 0 for success, else the exit code (a
    negative signal number when a signal ended the process) or 1 for a library
    exception; `last_line` is the last line the call wrote on stderr (cidx-auth never
    prints a token or a password); `traceback` whether it printed one (or the CLI's
    "unexpected error"); `rss_kb` its peak memory; `killed` the signal the soak sent it."""

    host: str
    worker: str
    kind: str
    start: float
    end: float
    code: int
    error: str = ""
    last_line: str = ""
    traceback: bool = False
    rss_kb: int = 0
    killed: str = ""
    startup_interrupt: bool = False
    """The soak's SIGINT landed before cidx-auth's code ran (:func:`startup_interrupt`);
    its traceback is then not counted in :attr:`traceback`."""

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.code == 0

    @property
    def seconds(self) -> float:
        """How long the call took."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Window:
    """One injected fault, from start to end; `hosts` it affects (empty: every host);
    `effect` what it does to a call (:data:`UNAVAILABLE`, :data:`NO_STORE`, or "");
    `retry_after` the longest `Retry-After` it sent."""

    kind: str
    start: float
    end: float
    hosts: tuple[str, ...] = ()
    effect: str = ""
    retry_after: float = 0.0
    detail: str = ""

    def touches(self, call: Call, after: float = 0.0) -> bool:
        """Whether `call` overlaps this window, or began within `after` seconds of its end."""
        if self.hosts and call.host not in self.hosts:
            return False
        return call.start <= self.end + after + SLACK and call.end >= self.start - SLACK


def breaker_grace(window: Window) -> float:
    """How long after `window` this machine's breaker may still stop calls: the open
    period it may have reached (30 s, doubled by each probe the outage failed, at most
    300 s), plus the window's `Retry-After`, which lengthens an opening."""
    probes = math.floor(max(0.0, window.end - window.start) / BREAKER_FIRST_OPEN)
    opened = min(BREAKER_MAX_OPEN, BREAKER_FIRST_OPEN * 2.0 ** min(probes, 16))
    return opened + window.retry_after


def excuse(call: Call, windows: Iterable[Window]) -> str | None:
    """Why a failed `call` does not count against the client; None when nothing does
    (it failed while a valid path existed). A successful call needs no excuse."""
    if call.ok:
        return None
    if call.killed:
        return f"the soak sent it {call.killed}"
    windows = list(windows)
    for window in windows:
        if window.effect == UNAVAILABLE and call.code == OUTAGE_EXIT and window.touches(call):
            return "the server was down or answering 503/429"
    for window in windows:
        if window.effect == UNAVAILABLE and BREAKER_LINE in call.last_line and \
                window.touches(call, after=breaker_grace(window)):
            return "this machine's circuit breaker, opened by an outage, had not probed yet"
    for window in windows:
        if window.effect == KILLED and PROBE_OUT_LINE in call.last_line and \
                window.touches(call, after=PROBE_TIMEOUT):
            return "the soak killed the breaker's probe, which the breaker waits 90 s for"
    for window in windows:
        if window.effect == NO_STORE and call.kind == TOKEN_REFRESH and \
                UNREADABLE_LINE in call.last_line and window.touches(call):
            return "`token --refresh` stops when it cannot read the token it is to mark refused"
    for window in windows:
        if window.effect == NO_STORE and LOGIN_LIMIT_LINE in call.last_line and \
                window.touches(call, after=LOGIN_REFILL_GRACE):
            return "its store could not be written, and the server's login limit refused it"
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """One user the fleet logs in as, and the server's counters for it over the run."""

    user: str
    hosts: tuple[str, ...]
    logins: int
    refreshes: int
    replays: int

    def auth_calls_per_lifetime(self, seconds: float, lifetime: float) -> float:
        """(logins + refreshes) per token lifetime of run time."""
        lifetimes = seconds / lifetime
        return (self.logins + self.refreshes) / lifetimes if lifetimes > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The figures of a run and whether it met its goals."""

    seed: int
    seconds: float
    lifetime: float
    calls: Sequence[Call]
    windows: Sequence[Window]
    identities: Sequence[Identity]
    replays: int
    process_rss_kb: Mapping[str, int] = field(default_factory=dict)
    """Peak memory of the long-lived processes (library workers), by name."""
    tracebacks_elsewhere: Sequence[str] = ()
    """Tracebacks found outside a call's record (a library worker's stderr), by name."""

    @property
    def failures(self) -> list[tuple[Call, str | None]]:
        """Every failed call with its excuse (None: unexcused)."""
        return [(call, excuse(call, self.windows)) for call in self.calls if not call.ok]

    @property
    def unexcused(self) -> list[Call]:
        """The calls that failed while a valid path existed."""
        return [call for call, why in self.failures if why is None]

    @property
    def tracebacks(self) -> list[str]:
        """Where a traceback (or the CLI's "unexpected error") was seen."""
        found = [f"{call.host} {call.worker} {call.kind}" for call in self.calls
                 if call.traceback]
        return found + list(self.tracebacks_elsewhere)

    @property
    def faults(self) -> Counter[str]:
        """Injected faults by kind."""
        return Counter(window.kind for window in self.windows)

    @property
    def queries(self) -> list[Call]:
        """The query calls (CLI `query` and library queries)."""
        return [call for call in self.calls if call.kind == "query"]

    def slowest_query(self) -> Call | None:
        """The successful query that took longest."""
        done = [call for call in self.queries if call.ok]
        return max(done, key=lambda call: call.seconds, default=None)

    def largest_process(self) -> tuple[str, int]:
        """(what, peak RSS in KiB) of the largest client process."""
        sizes = [(f"{call.host} {call.worker} ({call.kind})", call.rss_kb)
                 for call in self.calls]
        sizes += list(self.process_rss_kb.items())
        return max(sizes, key=lambda size: size[1], default=("", 0))

    def missed(self) -> list[str]:
        """The goals this run missed (empty: it passed)."""
        missed = []
        if self.replays:
            missed.append(f"{self.replays} refresh-token replay(s) (goal 0)")
        if self.unexcused:
            missed.append(f"{len(self.unexcused)} call(s) failed while a valid path existed "
                          "(goal 0)")
        if self.tracebacks:
            missed.append(f"{len(self.tracebacks)} traceback(s) (goal 0)")
        if not any(call.ok for call in self.queries):
            missed.append("no query succeeded: the soak tested nothing")
        return missed

    @property
    def exit_code(self) -> int:
        """0 when every goal was met; 3 on a replay (the promise itself broken, which CI
        never lets pass); 1 for any other goal missed."""
        if self.replays:
            return 3
        return 1 if self.missed() else 0
