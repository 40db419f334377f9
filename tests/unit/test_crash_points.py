"""Crash-point exploration: every fault at every port call, then a crash at every later one.

A process renews its token through ports that count their calls. A scenario injects
one fault at call ``i`` (a lost answer, a 5xx, a refusal, a failed write, a lock that
cannot be had, Ctrl-C...), lets the process carry on, and makes it vanish at call
``j >= i``: from there on nothing of it runs (every later port call of it raises), its
memory is gone, and the request in flight either reached the server or did not. Then a
fresh process renews on the same store. Every scenario must end with no replay at the
server (whose fake revokes the family on one, as the real one does) and a valid token
in the fresh process.

The scenarios are enumerated, not sampled: the call counts come from running each
faulted path first, so a change to the renewal's shape changes the list, not the rule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest

from adapters.events import CountingSink
from adapters.memory import (
    FakeClock,
    MemoryCredentialStore,
    MemoryStateStore,
    MemoryTokenStore,
    ScriptedGateway,
)
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    CidxAuthError,
    LockTimeout,
    LockUnavailable,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
    StorageError,
)
from cidx_auth.domain.token import Session, TokenRules, parse_access_token
from cidx_auth.ports import TokenStore
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.provider import TokenProvider

T = TypeVar("T")
ALICE = Credentials("alice", "secret")


class Crash(BaseException):
    """The process vanished (kill -9, power loss): nothing of it runs any more."""


def _lost(call: str, act: Callable[[], Any]) -> Any:
    act()  # the server acted; its answer never arrives
    raise ServerUnavailable(f"{call}: read timed out")


def _write_then_fail(call: str, act: Callable[[], Any]) -> Any:
    act()  # written, but the reply was lost (a Redis connection dropped after the script)
    raise StorageError(f"{call}: connection lost")


def _interrupted_after(call: str, act: Callable[[], Any]) -> Any:
    act()
    raise KeyboardInterrupt


def _raise(error: BaseException) -> Callable[[str, Callable[[], Any]], Any]:
    def fault(call: str, act: Callable[[], Any]) -> Any:
        raise error

    return fault


FAULTS: dict[str, tuple[frozenset[str], Callable[[str, Callable[[], Any]], Any]]] = {
    # name: (the calls it can hit, what happens there)
    "answer lost": (frozenset({"login", "refresh"}), _lost),
    "5xx": (frozenset({"login", "refresh"}), _raise(ServerUnavailable("502 Bad Gateway"))),
    "timeout": (frozenset({"login", "refresh"}), _raise(ServerUnavailable("read timeout"))),
    "unsent": (
        frozenset({"login", "refresh"}),
        _raise(ServerUnavailable("connection refused", reached=False)),
    ),
    "refusal": (frozenset({"refresh"}), _raise(RefreshRejected("Invalid refresh token"))),
    "rate limited": (frozenset({"login"}), _raise(RateLimited("Too many login attempts", 1.0))),
    "read fails": (frozenset({"store.load", "credentials.load"}), _raise(StorageError("EIO"))),
    "write fails": (
        frozenset({"store.save", "store.clear", "credentials.save"}),
        _raise(StorageError("read-only file system")),
    ),
    "write lost": (frozenset({"store.save"}), _write_then_fail),
    "lock unavailable": (frozenset({"store.lock"}), _raise(LockUnavailable("ENOLCK"))),
    "lock timeout": (frozenset({"store.lock"}), _raise(LockTimeout("held elsewhere"))),
    "interrupt": (
        frozenset({"store.load", "store.save", "store.lock", "credentials.load", "login",
                   "refresh", "sleep", "state"}),
        _raise(KeyboardInterrupt()),
    ),
    "interrupt after send": (frozenset({"login", "refresh"}), _interrupted_after),
}


@dataclass
class Plan:
    fault: str | None = None
    fault_at: int = 0
    crash_at: int = 0
    crash_reached: bool = False
    """For a crash at a request: the server received and processed it first."""


@dataclass
class Process:
    """One process's view of the shared ports: counts calls, injects the plan."""

    plan: Plan
    calls: list[str] = field(default_factory=list)
    dead: bool = False

    def step(self, call: str, act: Callable[[], T]) -> T:
        if self.dead:
            raise Crash
        self.calls.append(call)
        index = len(self.calls)
        if index == self.plan.crash_at:
            self.dead = True
            if self.plan.crash_reached:
                act()
            raise Crash
        if index == self.plan.fault_at and self.plan.fault is not None:
            hits, fault = FAULTS[self.plan.fault]
            if call in hits:
                return fault(call, act)  # type: ignore[no-any-return]
        return act()


class Store:
    def __init__(self, inner: TokenStore, process: Process) -> None:
        self._inner, self._p = inner, process

    def load(self) -> Session | None:
        return self._p.step("store.load", self._inner.load)

    def save(self, session: Session) -> None:
        self._p.step("store.save", lambda: self._inner.save(session))

    def clear(self) -> None:
        self._p.step("store.clear", self._inner.clear)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        self._p.step("store.lock", lambda: None)
        with self._inner.lock(timeout):  # the kernel lets go of a dead process's lock
            yield


class Creds:
    def __init__(self, inner: MemoryCredentialStore, process: Process) -> None:
        self._inner, self._p = inner, process

    def load(self) -> Credentials | None:
        return self._p.step("credentials.load", self._inner.load)

    def save(self, credentials: Credentials) -> None:
        self._p.step("credentials.save", lambda: self._inner.save(credentials))

    def clear(self) -> None:
        self._p.step("credentials.clear", self._inner.clear)


class Gateway:
    def __init__(self, inner: ScriptedGateway, process: Process) -> None:
        self._inner, self._p = inner, process

    def login(self, credentials: Credentials) -> Any:
        return self._p.step("login", lambda: self._inner.login(credentials))

    def refresh(self, refresh_token: str) -> Any:
        return self._p.step("refresh", lambda: self._inner.refresh(refresh_token))


class State:
    def __init__(self, inner: MemoryStateStore, process: Process) -> None:
        self._inner, self._p = inner, process

    def read(self) -> ClientState:
        return self._p.step("state", self._inner.read)

    def update(self, change: Callable[[ClientState], ClientState]) -> ClientState:
        return self._p.step("state", lambda: self._inner.update(change))


class Clock:
    def __init__(self, inner: FakeClock, process: Process) -> None:
        self._inner, self._p = inner, process

    def now(self) -> float:
        return self._inner.now()

    def sleep(self, seconds: float) -> None:
        self._p.step("sleep", lambda: self._inner.sleep(seconds))

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@dataclass
class World:
    """What outlives a process: the store, the credentials, the breaker state, the server."""

    clock: FakeClock
    server: ScriptedGateway
    store: TokenStore
    credentials: MemoryCredentialStore
    state: MemoryStateStore

    def process(self, plan: Plan) -> tuple[TokenProvider, Process]:
        p = Process(plan)
        clock = Clock(self.clock, p)
        events = CountingSink()
        provider = TokenProvider(
            clock=clock, store=Store(self.store, p), credentials=Creds(self.credentials, p),
            gateway=Gateway(self.server, p),
            breaker=CircuitBreaker(State(self.state, p), clock, events), events=events,
            rng=lambda: 0.5,
        )
        return provider, p


StoreFactory = Callable[[FakeClock], TokenStore]


def in_memory(clock: FakeClock) -> TokenStore:
    return MemoryTokenStore()


def plant(store: TokenStore, session: Session) -> None:
    with store.lock(5):
        store.save(session)


def start(kind: str, make_store: StoreFactory = in_memory) -> World:
    """A world in one of the states a renewal starts from."""
    clock = FakeClock()
    server = ScriptedGateway(clock, {"alice": "secret"})
    world = World(clock, server, make_store(clock),
                  MemoryCredentialStore(ALICE), MemoryStateStore())
    if kind == "first use":
        return world
    grant = server.login(ALICE)
    token = parse_access_token(grant.access_token, TokenRules(), clock.now())
    session = Session(token, grant.refresh_token, 0.0, "alice")
    if kind == "left in flight":
        session = replace(session, refresh_token=None, refresh_in_flight=True)
    plant(world.store, session)
    clock.advance(400 if kind == "stale" else 600)
    return world


STARTS = ("expired", "stale", "first use", "left in flight")


def run(
    start_kind: str, plan: Plan, make_store: StoreFactory = in_memory
) -> tuple[list[str], str]:
    """Run one scenario; returns the first process's calls and what went wrong, if anything."""
    world = start(start_kind, make_store)
    first, process = world.process(plan)
    # A clear error, an interruption or a crash: all allowed for the first process.
    with contextlib.suppress(CidxAuthError, KeyboardInterrupt, Crash):
        first.get_token()
    world.clock.advance(1)
    fresh, _ = world.process(Plan())
    try:
        raw = fresh.get_token()
    except CidxAuthError as error:
        return process.calls, f"the next process failed: {type(error).__name__}: {error}"
    token = parse_access_token(raw, TokenRules(), world.clock.now())
    if token.exp <= world.clock.now():
        return process.calls, "the next process got an expired token"
    if world.server.replays:
        return process.calls, f"{world.server.replays} replay(s)"
    return process.calls, ""


def scenarios(start_kind: str, make_store: StoreFactory = in_memory) -> Iterator[Plan]:
    """Every fault at every call it can hit, each followed by a crash at every later call."""
    baseline, _ = run(start_kind, Plan(), make_store)
    yield Plan()
    for index in range(1, len(baseline) + 2):  # + a crash just past the end
        for reached in (False, True):
            yield Plan(crash_at=index, crash_reached=reached)
    for name, (hits, _) in FAULTS.items():
        probe, _ = run(start_kind, Plan(fault=name, fault_at=10**6), make_store)
        for at in range(1, len(probe) + 1):
            calls, _ = run(start_kind, Plan(fault=name, fault_at=at), make_store)
            if calls[at - 1] not in hits:
                continue
            yield Plan(fault=name, fault_at=at)
            for crash in range(at + 1, len(calls) + 2):
                gateway_call = crash <= len(calls) and calls[crash - 1] in ("login", "refresh")
                for reached in (False, True) if gateway_call else (False,):
                    yield Plan(name, at, crash, reached)



def explore(start_kind: str, make_store: StoreFactory = in_memory) -> int:
    """Run every scenario from ``start_kind``; fails listing the ones that went wrong."""
    failures = []
    count = 0
    for plan in scenarios(start_kind, make_store):
        count += 1
        calls, problem = run(start_kind, plan, make_store)
        if problem:
            failures.append(f"{plan} after calls {calls}: {problem}")
    assert not failures, f"{len(failures)} of {count} scenarios failed:\n" + "\n".join(
        failures[:10]
    )
    return count


@pytest.mark.parametrize("start_kind", STARTS)
def test_no_fault_and_no_crash_point_causes_a_replay_or_leaves_the_next_process_stuck(
    start_kind: str,
) -> None:
    assert explore(start_kind) > 100  # the enumeration found the renewal's calls


def test_the_exploration_reaches_the_calls_that_matter() -> None:
    """The baseline paths make the calls the scenarios are built on."""
    expired, _ = run("expired", Plan())
    assert expired[:1] == ["store.load"] and "refresh" in expired and "login" not in expired
    # The intent is saved before the refresh leaves, the rotated session after it.
    assert expired.index("store.save") < expired.index("refresh")
    assert expired.count("store.save") == 2
    in_flight, _ = run("left in flight", Plan())
    assert "login" in in_flight and "refresh" not in in_flight
