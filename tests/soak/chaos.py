"""The scheduler: carries out the fault plan against the running fleet, and records
each fault as a :class:`Window` (from when it began to when it was undone).

Faults that need the same thing take turns: the server's fault rules (503s, 429s, held
answers, the mid-refresh kills, a restart, which empties them), the server clock, Redis,
and each host's store. A fault with a duration is undone by an end action; the
scheduler runs those between faults, and all that remain when the plan is over.

Root ignores mode bits, so "read-only" and "immutable" use ``chattr +i``: read-only
is the store's files (new files can still be made beside them, renames over them fail);
immutable is the files and the directory. Every bit set is cleared again, whatever
happens (:meth:`Chaos.undo_all`).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.redis_token_store import identity_key
from tests.soak.fleet import SHARED_USER, Fleet, SoakHost
from tests.soak.plan import MID_REFRESH, Planned
from tests.soak.verdict import KILLED, NO_STORE, TOKEN_REFRESH, UNAVAILABLE, Window
from tests.soak.workers import LibraryWorker, Workers

REFRESH = "/api/auth/refresh"
ARM_FOR = 5.0
"""How long a hold rule stays armed waiting for a request to hold."""
HOLD_WAIT = 20.0
"""How long a mid-refresh kill waits for the refresh it provoked to be held."""
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
BACKGROUND = (*MID_REFRESH, "server-restart", "redis-restart", "redis-failover")
"""The kinds that take seconds: each runs in a thread of its own, so the plan goes on."""
MID_REFRESH_SIGNAL = dict(zip(MID_REFRESH, ("SIGINT", "SIGTERM", "SIGKILL"), strict=True))
RESOURCES: dict[str, tuple[str, ...]] = {
    "answer-held": ("rules",), "burst-503": ("rules",), "rate-limit-429": ("rules",),
    "server-restart": ("rules", "up"), "clock-jump": ("clock", "up"), "revoke-family": ("up",),
    "redis-restart": ("redis",), "redis-failover": ("redis",),
    **{kind: ("rules",) for kind in MID_REFRESH},
}
"""What each kind needs to itself (the store kinds: their host's store too). "rules" are
the server's fault rules and held answers; "up" is the server process, which a restart
replaces (a clock jump or a revocation made then would be lost, or fail)."""


def chattr_works(root: Path) -> str | None:
    """None when ``chattr +i`` makes a file unwritable here, else why not."""
    if shutil.which("chattr") is None:
        return "chattr is not installed"
    probe = root / "chattr-probe"
    probe.write_bytes(b"")
    try:
        done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            return f"chattr +i failed: {done.stderr.strip()}"
        try:
            with probe.open("ab"):
                return "a file under chattr +i is still writable on this file system"
        except OSError:
            return None
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
        probe.unlink()


@dataclass
class Chaos:
    """Carries out a plan; ``windows`` and ``notes`` are what it did."""

    fleet: Fleet
    workers: Workers
    library: dict[str, LibraryWorker]
    start: float
    say: Callable[[str], None]
    windows: list[Window] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    banked: dict[str, Counter[str]] = field(default_factory=dict)
    """The server's per-user counters of the starts before a restart."""
    skipped: Counter[str] = field(default_factory=Counter)
    unreached: Counter[str] = field(default_factory=Counter)
    """Planned faults whose turn never came before the injection window closed."""
    clock_offset: float = 0.0
    _busy: Counter[str] = field(default_factory=Counter)
    _ends: list[tuple[float, int, tuple[str, ...], Callable[[], None]]] = field(
        default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _chattr: list[Path] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _background: list[threading.Thread] = field(default_factory=list)

    # The loop --------------------------------------------------------------------------

    def run(self, plan: list[Planned], last: float, stop: threading.Event) -> None:
        """Carry out ``plan``: each fault at its time, or once what it needs is free (a
        later fault whose turn has come and whose resources are free goes first); none
        starts after ``last``. Then undo what is still in force."""
        pending = list(plan)
        try:
            while pending and not stop.is_set():
                self._run_due_ends(time.time())
                now = time.time()
                if now > last:
                    break
                ready = next((planned for planned in pending
                              if now >= self.start + planned.at
                              and self._free(self._needs(planned))), None)
                if ready is None:
                    stop.wait(0.1)
                    continue
                pending.remove(ready)
                self._inject(ready)
            for planned in pending:
                self.unreached[planned.kind] += 1
        finally:
            self.undo_all()

    def _needs(self, planned: Planned) -> tuple[str, ...]:
        needs: tuple[str, ...] = RESOURCES.get(planned.kind, ())
        if planned.kind.startswith(("store-", "lock-")):
            needs += (f"store:{self._host(planned).name}",)
        return needs

    def _free(self, resources: tuple[str, ...]) -> bool:
        with self._lock:
            return not any(self._busy[resource] > 0 for resource in resources)

    def _take(self, resources: tuple[str, ...]) -> None:
        with self._lock:
            self._busy.update(resources)

    def _give_back(self, resources: tuple[str, ...]) -> None:
        with self._lock:
            self._busy.subtract(resources)

    def _inject(self, planned: Planned) -> None:
        """Start one fault: in this thread, or in a thread of its own for the slow ones
        (a mid-refresh kill, a restart, a failover), holding what they need meanwhile."""
        action: Callable[[Planned], None] = getattr(self, "_" + planned.kind.replace("-", "_"))
        if planned.kind not in BACKGROUND:
            self._attempt(action, planned)
            return
        needs = self._needs(planned)
        self._take(needs)

        def background() -> None:
            try:
                self._attempt(action, planned)
            finally:
                self._give_back(needs)

        thread = threading.Thread(target=background, name=planned.kind, daemon=True)
        self._background.append(thread)
        thread.start()

    def _attempt(self, action: Callable[[Planned], None], planned: Planned) -> None:
        try:
            action(planned)
        except Exception as error:  # a fault that could not be made is noted, not fatal
            self._skip(planned.kind, f"could not be injected: {type(error).__name__}: {error}")

    def _skip(self, kind: str, why: str) -> None:
        with self._lock:
            self.notes.append(f"{kind} at +{time.time() - self.start:.1f} s: {why}")
            self.skipped[kind] += 1

    def _later(self, seconds: float, resources: tuple[str, ...], end: Callable[[], None],
               background: bool = False) -> None:
        """Hold ``resources`` until ``end`` has run, ``seconds`` from now (in a thread of
        its own when ``background``: the resources are given back when it is done)."""
        self._take(resources)
        entry: tuple[float, int, tuple[str, ...], Callable[[], None]]
        if background:

            def run() -> None:
                try:
                    end()
                finally:
                    self._give_back(resources)

            def start() -> None:
                thread = threading.Thread(target=run, daemon=True)
                self._background.append(thread)
                thread.start()

            entry = (time.time() + seconds, next(self._order), (), start)
        else:
            entry = (time.time() + seconds, next(self._order), resources, end)
        with self._lock:
            heapq.heappush(self._ends, entry)

    def _run_due_ends(self, now: float) -> None:
        while True:
            with self._lock:
                if not self._ends or self._ends[0][0] > now:
                    return
                entry = heapq.heappop(self._ends)
            self._end(entry)

    def _end(self, entry: tuple[float, int, tuple[str, ...], Callable[[], None]]) -> None:
        _, _, resources, end = entry
        try:
            end()
        except Exception as error:
            with self._lock:
                self.notes.append(f"undoing a fault failed: {type(error).__name__}: {error}")
        finally:
            self._give_back(resources)

    def undo_all(self) -> None:
        """Let the faults under way finish, run every end action now, and clear every
        ``chattr`` bit still set."""
        for thread in list(self._background):
            thread.join(timeout=120)
        while self._ends:
            with self._lock:
                entry = heapq.heappop(self._ends)
            self._end(entry)
        for thread in list(self._background):  # and those the end actions started
            thread.join(timeout=120)
        self._unchattr(list(self._chattr))

    def _record(self, kind: str, start: float, end: float | None = None,
                hosts: tuple[str, ...] = (), effect: str = "", retry_after: float = 0.0,
                detail: str = "") -> Window:
        """Record a fault (and show it); a window with a duration is ended by
        :meth:`_close`."""
        window = Window(kind, start, time.time() if end is None else end, hosts, effect,
                        retry_after, detail)
        with self._lock:
            self.windows.append(window)
        self.say(f"  +{start - self.start:6.1f} s  {kind}: {detail}")
        return window

    def _close(self, window: Window) -> None:
        """Replace ``window`` with itself ended now."""
        with self._lock:
            index = self.windows.index(window)
            self.windows[index] = Window(**{**_fields(window), "end": time.time()})

    def _host(self, planned: Planned) -> SoakHost:
        hosts = self.fleet.hosts
        return hosts[int(planned.params["host"]) % len(hosts)]

    # Signals ---------------------------------------------------------------------------

    def _mid_refresh(self, planned: Planned) -> None:
        """Hold the next refresh's answer after the server rotated, provoke one with
        `token --refresh` on a host, then signal every CLI process of the identity whose
        refresh is held (and, but for SIGINT, its library workers), and let the answer go."""
        server, host = self.fleet.server, self._host(planned)
        stats = server.stats()
        totals, before = stats["totals"], _refreshes(stats)
        began = time.time()
        server.hold(REFRESH, seconds=30)
        try:
            self._stop_refresher(planned, host, totals, before, began)
        finally:  # whatever happened, nothing stays held or armed
            server.release_held()
            server.clear_faults()

    def _stop_refresher(self, planned: Planned, host: SoakHost, totals: dict[str, int],
                        before: dict[str, int], began: float) -> None:
        server, name = self.fleet.server, MID_REFRESH_SIGNAL[planned.kind]
        trigger = threading.Thread(target=self.workers.run_cli, daemon=True,
                                   args=(host, "chaos", TOKEN_REFRESH, ("token", "--refresh")))
        trigger.start()
        if not self._held(totals["held"] + 1, trigger):
            self._skip(planned.kind, f"skipped: `token --refresh` on {host.name} caused no "
                       "refresh to hold (its breaker may have been open)")
            return
        # Whose refresh is held: the user whose refreshes rose (another's may have passed
        # meanwhile: all of them). A refresh of a token the server does not know (after a
        # restart) is charged to nobody: then it is taken to be the one the trigger sent.
        risen = [user for user, count in _refreshes(server.stats()).items()
                 if count > before.get(user, 0)] or [host.user]
        hosts = tuple(each for user in risen for each in self.fleet.hosts_of(user))
        stopped = self.workers.running.signal_hosts(hosts, SIGNALS[name])
        # A library worker has no handler of its own: SIGTERM and SIGKILL end it at once
        # (an application's Ctrl-C is the application's business: SIGINT spares it).
        libraries = sum(self.library[each].kill(SIGNALS[name]) for each in hosts
                        if name != "SIGINT" and each in self.library)
        try:
            server.wait_for("held_abandoned", totals["held_abandoned"] + 1, timeout=10)
            abandoned = "the server saw its client leave"
        except TimeoutError:
            abandoned = "the server did not see its client leave within 10 s (the answer " \
                "was released to it)"
        outright = name == "SIGKILL" or libraries > 0
        self._record(planned.kind, began, hosts=hosts, effect=KILLED if outright else "",
                     detail=(
                         f"{name} to {stopped} CLI process(es) and {libraries} library "
                         f"worker(s) on {', '.join(hosts)} while a refresh for "
                         f"{', '.join(risen)} was held; {abandoned}"))

    _sigint_mid_refresh = _sigterm_mid_refresh = _kill9_mid_refresh = _mid_refresh

    def _held(self, count: int, trigger: threading.Thread) -> bool:
        """Whether the server holds ``count`` answers, within :data:`HOLD_WAIT` or 2 s
        after ``trigger`` ended (it failed without a refresh: the breaker was open)."""
        deadline = time.time() + HOLD_WAIT
        ended: float | None = None
        while time.time() < deadline and (ended is None or time.time() < ended + 2):
            try:
                self.fleet.server.wait_for("held", count, timeout=0.5)
                return True
            except TimeoutError:
                if ended is None and not trigger.is_alive():
                    ended = time.time()
        return False

    def _kill_anywhere(self, planned: Planned) -> None:
        """A signal to one running process, wherever it is in its work."""
        name, pick = str(planned.params["signal"]), int(planned.params["pick"])
        now = time.time()
        hosts: tuple[str, ...] = ()
        if planned.params["library"] and name == "SIGKILL":
            victim = self.library[sorted(self.library)[pick % len(self.library)]]
            if victim.kill(signal.SIGKILL):
                hosts, detail = (victim.host.name,), \
                    f"SIGKILL to the library worker of {victim.host.name}"
            else:
                detail = "no library worker was running"
        else:
            running = self.workers.running.on_hosts()
            child = running[pick % len(running)] if running else None
            if child is None:
                detail = "no CLI process was running"
            elif self.workers.running.signal(child, SIGNALS[name]):
                hosts, detail = (child.host,), f"{name} to {child.label} on {child.host}"
            else:
                detail = "the chosen process had just ended"
        outright = hosts and name == "SIGKILL"
        self._record(planned.kind, now, now, hosts=hosts, effect=KILLED if outright else "",
                     detail=detail)

    # The server ------------------------------------------------------------------------

    def _answer_held(self, planned: Planned) -> None:
        """The next answers to a path held after the server acted (a refresh rotated, a
        login opened a family, a query ran), each for ``seconds``: past the client's
        30 s deadline, the answer is lost. The rule is taken back after a few seconds
        if nobody called meanwhile; the held answers go out on their own."""
        path, seconds = str(planned.params["path"]), float(planned.params["seconds"])
        count = int(planned.params["count"])
        server = self.fleet.server
        held = server.stats()["totals"]["held"]
        began = time.time()
        server.hold(path, count=count, seconds=seconds)

        def end() -> None:
            server.clear_faults()
            fired = server.stats()["totals"]["held"] - held
            self._record(planned.kind, began, began + seconds, detail=(
                f"{fired} of the next {count} answer(s) to {path} held {seconds:g} s after "
                "the server acted"))

        self._later(min(seconds, ARM_FOR), ("rules",), end)

    def _server_restart(self, planned: Planned) -> None:
        server, down, how = self.fleet.server, float(planned.params["down"]), planned.params["how"]
        began = time.time()
        self._bank(server.stats())
        server.kill() if how == "kill" else server.stop()
        time.sleep(down)
        server.start()
        if self.clock_offset:
            server.set_clock_offset(self.clock_offset)
        verb = "killed (kill -9)" if how == "kill" else "stopped"
        self._record(planned.kind, began, effect=UNAVAILABLE, detail=(
            f"{verb}, down {down:g} s, started again (new signing key, no sessions) after "
            f"{time.time() - began:.1f} s"))

    def _revoke_family(self, planned: Planned) -> None:
        users = self.fleet.users
        user = users[int(planned.params["user"]) % len(users)]
        now = time.time()
        families = self.fleet.server.revoke(user)
        self._record(planned.kind, now, now, self.fleet.hosts_of(user), detail=(
            f"{families} refresh famil{'y' if families == 1 else 'ies'} of {user} revoked"))

    def _burst(self, planned: Planned, kind: str, **options: Any) -> None:
        count, seconds = int(planned.params["count"]), float(planned.params["seconds"])
        self.fleet.server.inject(kind, count=count, **options)
        retry_after = float(options.get("retry_after", 0))
        what = "503" if kind == "error" else f"429 (Retry-After {retry_after:g})"
        window = self._record(planned.kind, time.time(), effect=UNAVAILABLE,
                              retry_after=retry_after,
                              detail=f"up to {count} answers of {what} for {seconds:g} s")

        def end() -> None:
            self.fleet.server.clear_faults()
            self._close(window)

        self._later(seconds, ("rules",), end)

    def _burst_503(self, planned: Planned) -> None:
        self._burst(planned, "error", status=503)

    def _rate_limit_429(self, planned: Planned) -> None:
        self._burst(planned, "rate_limit", retry_after=int(planned.params["retry_after"]))

    def _clock_jump(self, planned: Planned) -> None:
        offset, seconds = float(planned.params["offset"]), float(planned.params["seconds"])
        self.fleet.server.set_clock_offset(offset)
        self.clock_offset = offset
        window = self._record(planned.kind, time.time(), detail=(
            f"the server's clock {offset:+.0f} s for {seconds:g} s"))

        def end() -> None:
            self.clock_offset = 0.0
            self.fleet.server.set_clock_offset(0.0)
            self._close(window)

        self._later(seconds, RESOURCES[planned.kind], end)

    def _bank(self, stats: dict[str, Any]) -> None:
        with self._lock:
            for user, counts in stats["users"].items():
                self.banked.setdefault(user, Counter()).update(counts)

    # Stores ----------------------------------------------------------------------------

    def _store(self, planned: Planned, directory_too: bool) -> None:
        host, seconds = self._host(planned), float(planned.params["seconds"])
        files = sorted(path for path in host.store_dir.iterdir()
                       if path.is_file() and ".tmp-" not in path.name)
        paths = self._chattr_set([*files, host.store_dir] if directory_too else files)
        what = "files and directory" if directory_too else "files"
        window = self._record(planned.kind, time.time(), hosts=(host.name,), effect=NO_STORE,
                              detail=f"chattr +i on the {what} of {host.name}'s "
                                     f".code-indexer for {seconds:g} s")

        def end() -> None:
            self._unchattr(paths)
            self._close(window)

        self._later(seconds, (f"store:{host.name}",), end)

    def _store_read_only(self, planned: Planned) -> None:
        self._store(planned, directory_too=False)

    def _store_immutable(self, planned: Planned) -> None:
        self._store(planned, directory_too=True)

    def _lock_unusable(self, planned: Planned) -> None:
        """A file host's lock files made immutable (flock still works on a read-only
        descriptor); on a Redis host, the token lock held by a holder that died, which
        keeps it until its lease ends."""
        host, seconds = self._host(planned), float(planned.params["seconds"])
        locks: list[Path] = []
        hosts: tuple[str, ...]
        if host.store_url is None:
            locks = self._chattr_set([path for path in host.store_dir.glob("*.lock")
                                      if path.is_file()])
            hosts, detail = (host.name,), (f"chattr +i on {', '.join(p.name for p in locks)} "
                                           f"of {host.name} for {seconds:g} s")
        else:
            name = identity_key(self.fleet.server.url, SHARED_USER) + ":lock"
            client = self.fleet.redis.current_primary().client()
            try:
                taken = client.set(name, f"soak-dead-{secrets.token_hex(8)}", nx=True,
                                   px=int(seconds * 1000))
            finally:
                client.close()
            hosts = self.fleet.hosts_of(SHARED_USER)
            detail = (f"the Redis token lock taken by a dead holder for {seconds:g} s" if taken
                      else "the Redis token lock was held by a live holder: left alone")
        window = self._record(planned.kind, time.time(), hosts=hosts, detail=detail)

        def end() -> None:
            self._unchattr(locks)
            self._close(window)

        self._later(seconds, (f"store:{host.name}",), end)

    def _chattr_set(self, paths: list[Path]) -> list[Path]:
        """``chattr +i`` each path; a file gone meanwhile (a temporary file renamed) is
        left out. The paths made immutable."""
        done = []
        for path in paths:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                    text=True, check=False)
            if result.returncode == 0:
                with self._lock:
                    self._chattr.append(path)
                done.append(path)
            elif path.exists():
                raise RuntimeError(f"chattr +i {path.name}: {result.stderr.strip()}")
        return done

    def _unchattr(self, paths: list[Path]) -> None:
        for path in paths:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
            with self._lock:
                if path in self._chattr:
                    self._chattr.remove(path)

    # Redis -----------------------------------------------------------------------------

    def _redis_restart(self, planned: Planned) -> None:
        began = time.time()
        if not self.fleet.redis.healthy():
            self._skip(planned.kind, "skipped: the Redis set was not whole")
            return
        node = self.fleet.redis.restart_replica()
        # Until the replica has synchronised, the primary lists it and `WAIT` times out:
        # no write under the lock counts, and every renewal on the Redis hosts logs in.
        self._record(planned.kind, began, hosts=self.fleet.hosts_of(SHARED_USER),
                     effect=NO_STORE, detail=(
                         f"the replica (port {node.port}) restarted empty and resynchronised "
                         f"after {time.time() - began:.1f} s"))

    def _redis_failover(self, planned: Planned) -> None:
        redis = self.fleet.redis
        began = time.time()
        if not redis.healthy():
            self._skip(planned.kind, "skipped: the Redis set was not whole")
            return
        primary = redis.current_primary()
        redis.kill(primary)
        redis.await_primary(redis.other(primary))
        # Behind Sentinel a write under the lock needs a replica's confirmation: until
        # the old primary has rejoined, no renewal on the Redis hosts can record anything.
        window = self._record(planned.kind, began, hosts=self.fleet.hosts_of(SHARED_USER),
                              effect=NO_STORE, detail=(
                                  f"kill -9 of the primary (port {primary.port}); the "
                                  f"Sentinels promoted port {redis.other(primary).port} "
                                  f"after {time.time() - began:.1f} s"))

        def end() -> None:
            redis.rejoin(primary)
            self._close(window)
            self.say(f"  +{time.time() - self.start:6.1f} s  redis-failover: port "
                     f"{primary.port} rejoined as a replica")

        self._later(float(planned.params["rejoin_after"]), ("redis",), end, background=True)


def _fields(window: Window) -> dict[str, Any]:
    return {name: getattr(window, name) for name in Window.__slots__}


def _refreshes(stats: dict[str, Any]) -> dict[str, int]:
    """Refreshes per user, refused ones included (a held answer may be a refusal)."""
    return {user: int(counts.get("refreshes", 0)) + int(counts.get("failed_refreshes", 0))
            for user, counts in stats["users"].items()}

