"""The soak's workers: looping ``cidx-auth`` processes, and library worker processes.

Each CLI call is a child process; its exit code and peak memory come from ``os.wait4``
on its pid, its stderr from a file (its last line is kept: cidx-auth prints no token or
password there). While it runs it is listed in the :class:`Running` table with a pidfd,
so the scheduler can signal exactly that process (a pidfd never reaches a recycled pid)
and the watchdog can end one that hangs, which then counts as a failure.

The library workers (``python -m tests.soak.library_worker``) write their own records;
a supervisor thread per host restarts one the scheduler killed, until the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.soak.fleet import SoakHost
from tests.soak.library_worker import RECORDED
from tests.soak.verdict import Call, startup_interrupt

HANG_LIMIT = 240.0
"""A call still running after this long is stuck: the watchdog kills it and it counts as
failed. (A call may legitimately take 65 s waiting for the lock, plus a 60 s API call.)"""
REPO = "backend"
CLI_CALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("query", ("query", "token refresh", "--repo", REPO, "-l", "3")),
    ("query", ("query", "retry with backoff", "-l", "2")),
    ("token", ("token",)),
    ("repos", ("request", "GET", "/api/repos")),
)
"""What a CLI worker runs, each as likely: mostly queries, and `token` (the cold path)."""
CRASH_MARKS = ("Traceback (most recent call last)", "unexpected error (")
"""A Python traceback, or the CLI's own line for an exception it did not expect."""


def last_line(text: str) -> str:
    """The last non-empty line of ``text``, at most 300 characters."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


@dataclass
class Child:
    """A running CLI call: its host, its pid, a pidfd to signal it by, and the signal
    the soak sent it (if any)."""

    host: str
    pid: int
    pidfd: int
    started: float
    label: str
    killed: str = ""


class Running:
    """The CLI calls running now, by host; the scheduler signals them through here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, Child] = {}

    def add(self, host: str, pid: int, label: str) -> Child:
        child = Child(host, pid, os.pidfd_open(pid), time.time(), label)
        with self._lock:
            self._children[pid] = child
        return child

    def remove(self, child: Child) -> None:
        with self._lock:
            self._children.pop(child.pid, None)
            os.close(child.pidfd)

    def signal(self, child: Child, signum: int) -> bool:
        """Send ``signum`` to one running call; False if it has ended."""
        with self._lock:
            if self._children.get(child.pid) is not child:
                return False
            try:
                signal.pidfd_send_signal(child.pidfd, signum)
            except ProcessLookupError:
                return False
            child.killed = child.killed or signal.Signals(signum).name
            return True

    def on_hosts(self, hosts: tuple[str, ...] | None = None) -> list[Child]:
        """The calls running now on ``hosts`` (None: on every host)."""
        with self._lock:
            return [child for child in self._children.values()
                    if hosts is None or child.host in hosts]

    def signal_hosts(self, hosts: tuple[str, ...], signum: int) -> int:
        """Signal every call running on ``hosts``; how many were signalled."""
        return sum(self.signal(child, signum) for child in self.on_hosts(hosts))

    def overdue(self, now: float) -> list[Child]:
        """Calls running longer than :data:`HANG_LIMIT`."""
        return [child for child in self.on_hosts() if now - child.started > HANG_LIMIT]


class Recorder:
    """Every finished call, from every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


@dataclass
class Workers:
    """What the workers share: the table of running calls, the record, the end time."""

    running: Running
    recorder: Recorder
    until: float
    hung: set[int] = field(default_factory=set)
    """The pids the watchdog killed."""

    def run_cli(self, host: SoakHost, worker: str, kind: str, args: tuple[str, ...]) -> Call:
        """One ``cidx-auth`` call on ``host``, recorded."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.time()
            process = subprocess.Popen(host.argv(*args), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, env=host.env())
            child = self.running.add(host.name, process.pid, f"{worker} {kind}")
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                self.running.remove(child)
            process.returncode = code = os.waitstatus_to_exitcode(status)
            end = time.time()
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            out.seek(0)
            printed = out.read()
        line = last_line(stderr)
        if code == 0 and kind.startswith("token") and printed.count(b".") != 2:
            code, line = 1, "exit 0 without printing a token"
        if process.pid in self.hung:
            code, line = 1, f"hung: killed by the watchdog after {HANG_LIMIT:.0f} s"
        early = child.killed == "SIGINT" and startup_interrupt(stderr)
        crashed = any(mark in stderr for mark in CRASH_MARKS) and not early
        call = Call(host.name, worker, kind, start, end, code, "", line, crashed,
                    usage.ru_maxrss, "" if process.pid in self.hung else child.killed, early)
        self.recorder.add(call)
        return call

    def cli_loop(self, host: SoakHost, worker: str, seed: int) -> None:
        """Run CLI calls on ``host`` until the end of the run."""
        rng = random.Random(seed)
        while time.time() < self.until:
            kind, args = rng.choice(CLI_CALLS)
            self.run_cli(host, worker, kind, args)
            time.sleep(rng.uniform(0.0, 0.3))

    def watchdog(self, stop: threading.Event) -> None:
        """Kill calls that hang, until ``stop``."""
        while not stop.wait(1.0):
            for child in self.running.overdue(time.time()):
                self.hung.add(child.pid)
                self.running.signal(child, signal.SIGKILL)


@dataclass
class LibraryWorker:
    """One host's library worker process, restarted whenever it ends before the run."""

    host: SoakHost
    until: float
    records: Path
    threads: int = 2
    tasks: int = 2
    starts: int = 0
    rss_kb: int = 0
    tracebacks: list[str] = field(default_factory=list)
    on_exit: Callable[[LibraryWorker, int], None] | None = None
    _pidfd: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tests.soak.library_worker", "--project",
                str(self.host.project), "--host", self.host.name, "--out", str(self.records),
                "--threads", str(self.threads), "--tasks", str(self.tasks),
                "--until", repr(self.until)]

    def supervise(self) -> None:
        """Run the worker, again after each early end, until the run ends."""
        root = Path(__file__).resolve().parents[2]
        while time.time() < self.until:
            self.starts += 1
            with tempfile.TemporaryFile() as err:
                process = subprocess.Popen(self.argv(), cwd=root, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=err,
                                           env=self.host.env())
                with self._lock:
                    self._pidfd = os.pidfd_open(process.pid)
                try:
                    _, status, usage = os.wait4(process.pid, 0)
                finally:
                    with self._lock:
                        os.close(self._pidfd)
                        self._pidfd = None
                process.returncode = code = os.waitstatus_to_exitcode(status)
                self.rss_kb = max(self.rss_kb, usage.ru_maxrss)
                err.seek(0)
                stderr = err.read().decode(errors="replace")
            # Those of failed calls are in the calls' records already (``RECORDED``).
            if stderr.count(CRASH_MARKS[0]) > stderr.count(RECORDED):
                self.tracebacks.append(f"{self.host.name} library worker (start "
                                       f"{self.starts}): {last_line(stderr)}")
            if self.on_exit is not None:
                self.on_exit(self, code)

    def kill(self, signum: int) -> bool:
        """Signal the worker process now; False if none runs."""
        with self._lock:
            if self._pidfd is None:
                return False
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                return False
            return True

    def read_calls(self) -> list[Call]:
        """The calls the worker recorded (every start appends to one file)."""
        if not self.records.exists():
            return []
        calls = []
        for line in self.records.read_text().splitlines():
            with contextlib.suppress(ValueError, TypeError):
                calls.append(Call(**json.loads(line)))
        return calls
