"""The provider's single flight, seen from its callers: who waits, on what thread the
renewal runs, and what each caller is told when it cannot end well."""

from __future__ import annotations

import asyncio
import gc
import threading
from types import SimpleNamespace

import pytest

from cidx_auth.domain.errors import InvalidCredentials, ServerUnavailable, TransportError
from cidx_auth.domain.events import AuthEvent
from cidx_auth.service import provider as provider_module
from tests.unit.conftest import World

INTERRUPTED = "the token renewal was interrupted before it finished; try again"
REFUSED_AND_NO_NEW_ONE = (
    "the server refused the token and a new one could not be obtained; try again"
)
SYNC_ON_THE_LOOP = (
    "get_token() was called on an event loop thread while aget_token() renews the token "
    "on it; use `await aget_token()` inside async code"
)


async def at_gate(world: World) -> None:
    """Wait until a call is held at the scripted server's gate."""
    assert await asyncio.to_thread(world.gateway.at_gate.wait, 10)


def expired_in_store(world: World) -> None:
    """A stored session whose token has expired: every caller must wait for a renewal."""
    world.session()
    world.clock.advance(600)


@pytest.mark.parametrize("style", ["get_token", "aget_token"])
def test_a_fresh_token_does_not_wait_for_the_providers_lock(world: World, style: str) -> None:
    token = world.provider.get_token()
    got: list[str] = []

    def call() -> None:
        if style == "aget_token":
            got.append(asyncio.run(world.provider.aget_token()))
        else:
            got.append(world.provider.get_token())

    with world.provider._mutex:  # as while another thread lands a renewal
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(10)
        assert got == [token]


async def test_an_async_renewal_runs_on_a_named_daemon_thread(world: World) -> None:
    expired_in_store(world)
    renewing: list[threading.Thread] = []
    count = world.events.emit

    def note_the_thread(event: AuthEvent) -> None:
        renewing.append(threading.current_thread())
        count(event)

    world.events.emit = note_the_thread  # type: ignore[method-assign]
    assert await world.provider.aget_token()
    assert renewing and renewing[0] is not threading.current_thread()
    assert renewing[0].name == "cidx-auth-renewal"
    assert renewing[0].daemon  # a renewal stuck on the network never holds up exit


async def test_the_renewal_thread_runs_this_flights_renewal(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread is handed the renewal and its flight. Run here, in place of a thread,
    so that a thread given nothing to run fails this test instead of leaving it waiting."""
    expired_in_store(world)
    provider = world.provider
    made: list[dict[str, object]] = []

    class InPlace:
        def __init__(self, **how: object) -> None:
            made.append(how)

        def start(self) -> None:
            target, args = made[-1]["target"], made[-1]["args"]
            target(*args)  # type: ignore[operator]

    with monkeypatch.context() as patch:
        patch.setattr(provider_module, "threading",
                      SimpleNamespace(Thread=InPlace, get_ident=threading.get_ident))
        token = await provider.aget_token()
    assert token == world.store.session.token.raw  # type: ignore[union-attr]
    assert world.gateway.refreshes == 1 and len(made) == 1


async def test_a_sync_call_on_the_loop_thread_is_refused_and_the_renewal_goes_on(
        world: World) -> None:
    expired_in_store(world)
    world.gateway.gate = threading.Event()
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)
    with pytest.raises(RuntimeError) as refused:
        world.provider.get_token()
    assert str(refused.value) == SYNC_ON_THE_LOOP
    world.gateway.gate.set()
    assert await leader == world.provider.get_token()
    assert world.gateway.refreshes == 1


async def test_a_renewal_thread_that_cannot_start_fails_the_leader_and_its_followers(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    expired_in_store(world)
    provider = world.provider
    cannot_start = RuntimeError("can't start new thread")
    loop_thread = threading.get_ident()
    follower_holds_the_flight = threading.Event()
    followers: list[threading.Thread] = []
    told: list[BaseException] = []

    def follow() -> None:
        try:
            provider.get_token()
        except RuntimeError as error:
            told.append(error)

    def get_ident() -> int:
        # The provider asks for the caller's thread once it has joined the flight.
        if threading.get_ident() != loop_thread:
            follower_holds_the_flight.set()
        return threading.get_ident()

    class NoThread:
        def __init__(self, **_: object) -> None:
            pass

        def start(self) -> None:
            followers.append(threading.Thread(target=follow, daemon=True))
            followers[0].start()
            assert follower_holds_the_flight.wait(10)
            raise cannot_start

    with monkeypatch.context() as patch:
        patch.setattr(provider_module, "threading",
                      SimpleNamespace(Thread=NoThread, get_ident=get_ident))
        with pytest.raises(RuntimeError) as raised:
            await provider.aget_token()
    assert raised.value is cannot_start
    followers[0].join(10)
    assert told == [cannot_start]
    assert await provider.aget_token()  # no flight left behind: this call renews
    assert world.gateway.refreshes == 1


async def test_an_interrupted_leader_stops_and_its_followers_are_told_to_try_again(
        world: World) -> None:
    expired_in_store(world)
    world.gateway.gate = threading.Event()
    world.gateway.fail_next(SystemExit())  # type: ignore[arg-type]  # SIGTERM mid-refresh
    stopped: list[str] = []

    def lead() -> None:
        try:
            world.provider.get_token()
        except SystemExit:
            stopped.append("leader")

    leader = threading.Thread(target=lead)
    leader.start()
    await at_gate(world)
    follower = asyncio.create_task(world.provider.aget_token())
    await asyncio.sleep(0)  # the follower has joined the flight
    world.gateway.gate.set()
    with pytest.raises(TransportError) as raised:
        await asyncio.wait_for(follower, 10)
    leader.join(10)
    assert stopped == ["leader"]  # the signal goes on up in the leader only
    assert type(raised.value) is TransportError and str(raised.value) == INTERRUPTED
    assert await world.provider.aget_token()  # the flight ended: this call renews


async def test_a_token_refused_during_a_failed_async_renewal_is_not_handed_out(
        world: World) -> None:
    first = await world.provider.aget_token()
    world.clock.advance(301)
    world.gateway.gate = threading.Event()
    world.gateway.fail_next(ServerUnavailable("down", reached=False))
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)
    world.provider.invalidate(first)  # a 401 for it arrives meanwhile
    world.gateway.gate.set()
    with pytest.raises(ServerUnavailable) as raised:
        await leader
    assert str(raised.value) == REFUSED_AND_NO_NEW_ONE


async def cancel_a_waiter_then_fail_the_renewal(world: World) -> None:
    world.gateway.users["alice"] = "changed"  # the login will be refused
    world.gateway.gate = threading.Event()
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)
    waiter = asyncio.create_task(world.provider.aget_token())
    await asyncio.sleep(0)  # the waiter has joined the flight
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    world.gateway.gate.set()
    with pytest.raises(InvalidCredentials):
        await leader
    await asyncio.sleep(0)  # the failure has reached the cancelled waiter's future too


async def test_a_cancelled_waiter_leaves_no_unread_failure_behind(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # what earlier tests left behind is not this test's to judge
    caplog.clear()
    await cancel_a_waiter_then_fail_the_renewal(world)
    with caplog.at_level("ERROR", logger="asyncio"):
        gc.collect()  # where asyncio reports a future whose exception nobody read
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_an_event_sink_asking_for_a_token_during_the_renewal_is_refused_not_left_waiting(
        caplog: pytest.LogCaptureFixture) -> None:
    """A sink runs on the renewing thread; waiting there for the renewal's own result
    would wait forever. It gets a RuntimeError (logged as a sink failure), and the
    renewal goes on to hand out its token."""
    from adapters.memory import MemoryStateStore, memory_ports
    from cidx_auth.service.breaker import CircuitBreaker
    from cidx_auth.service.provider import TokenProvider

    seen: list[BaseException] = []

    class AskingSink:
        def emit(self, event: AuthEvent) -> None:
            try:
                provider.get_token()
            except RuntimeError as error:
                seen.append(error)
                raise

    ports = memory_ports()
    provider = TokenProvider(
        clock=ports.clock, store=ports.token_store, credentials=ports.credential_store,
        gateway=ports.gateway, events=AskingSink(),
        breaker=CircuitBreaker(MemoryStateStore(), ports.clock, AskingSink()),
    )
    tokens: list[str] = []
    with caplog.at_level("ERROR", logger="cidx_auth.service.provider"):
        caller = threading.Thread(target=lambda: tokens.append(provider.get_token()),
                                  daemon=True)
        caller.start()
        caller.join(10)  # a guard against the hang this test is about, not a timing goal
    assert not caller.is_alive(), "get_token() waited for itself"
    assert len(tokens) == 1 and ports.gateway.logins == 1
    assert [str(error) for error in seen] == [
        "get_token() was called by the renewal it would wait for (from an event sink?); an "
        "event sink must not ask for a token"
    ]
