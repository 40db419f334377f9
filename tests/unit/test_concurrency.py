"""Single flight across threads and asyncio tasks together, and the async driver."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cidx_auth.domain.errors import ServerUnavailable
from cidx_auth.domain.events import EventKind
from tests.unit.conftest import World, make_world


async def at_gate(world: World) -> None:
    """Wait until a refresh is held at the scripted server's gate."""
    assert await asyncio.to_thread(world.gateway.at_gate.wait, 10)


def run_tasks_in_loop(world: World, count: int, started: threading.Event, out: list[str]) -> None:
    async def main() -> None:
        async def one() -> str:
            return await world.provider.aget_token()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)  # every task has started and is waiting
        started.set()
        out.extend(await asyncio.gather(*tasks))

    asyncio.run(main())


def test_fifty_threads_and_two_hundred_tasks_cause_one_refresh(world: World) -> None:
    world.session()
    world.clock.advance(600)  # the stored token has expired
    world.gateway.gate = threading.Event()
    results: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(51)

    def thread_caller() -> None:
        ready.wait()
        token = world.provider.get_token()
        with lock:
            results.append(token)

    threads = [threading.Thread(target=thread_caller) for _ in range(50)]
    for t in threads:
        t.start()
    task_results: list[str] = []
    tasks_started = threading.Event()
    loop_thread = threading.Thread(
        target=run_tasks_in_loop, args=(world, 200, tasks_started, task_results)
    )
    loop_thread.start()
    ready.wait()
    assert tasks_started.wait(10)
    world.gateway.gate.set()  # let the one refresh through
    for t in [*threads, loop_thread]:
        t.join(10)
    assert world.gateway.refreshes == 1 and world.gateway.logins == 0
    everyone = results + task_results
    assert len(everyone) == 250
    assert len(set(everyone)) == 1
    assert world.store.session is not None and everyone[0] == world.store.session.token.raw


async def test_async_path_refreshes_and_relogs_in() -> None:
    world = make_world()
    first = await world.provider.aget_token()
    assert await world.provider.aget_token() == first
    world.clock.advance(600)
    second = await world.provider.aget_token()
    assert second != first and world.gateway.refreshes == 1
    world.gateway.revoke_all()
    world.clock.advance(600)
    assert await world.provider.aget_token() not in (first, second)
    assert world.gateway.logins == 2
    assert world.events[EventKind.RELOGGED_IN] == 1


async def test_async_retries_sleep_on_the_fake_clock() -> None:
    world = make_world()
    world.gateway.fail_next(ServerUnavailable("down"), times=2)
    assert await world.provider.aget_token()
    assert len(world.clock.sleeps) == 2 and world.gateway.logins == 3


async def test_async_followers_share_the_leaders_failure() -> None:
    world = make_world()
    world.gateway.fail_next(ServerUnavailable("down"), times=3)
    world.gateway.gate = threading.Event()
    callers = asyncio.gather(
        *(world.provider.aget_token() for _ in range(10)), return_exceptions=True
    )
    await at_gate(world)  # every caller has joined the one flight by now
    world.gateway.gate.set()
    results = await callers
    assert all(isinstance(r, ServerUnavailable) for r in results)
    assert world.gateway.logins == 3


async def test_stale_followers_do_not_wait_for_the_leader() -> None:
    world = make_world()
    first = await world.provider.aget_token()
    world.clock.advance(301)
    world.gateway.gate = threading.Event()
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)  # the leader is blocked inside the refresh
    assert await world.provider.aget_token() == first  # no waiting for a stale token
    world.gateway.gate.set()
    assert await leader != first


async def test_cancelling_the_async_leader_does_not_waste_the_renewal() -> None:
    world = make_world()
    await world.provider.aget_token()
    world.clock.advance(600)
    world.gateway.gate = threading.Event()
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)  # the refresh is on the wire
    follower = asyncio.create_task(world.provider.aget_token())
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    world.gateway.gate.set()
    token = await follower  # the renewal went on and landed for everyone
    assert world.store.session is not None and token == world.store.session.token.raw
    assert world.gateway.refreshes == 1 and world.gateway.replays == 0
    assert await world.provider.aget_token() == token
    assert not world.store.locked


async def test_sync_call_on_the_loop_thread_during_async_renewal_is_refused() -> None:
    world = make_world()
    world.session()
    world.clock.advance(600)
    world.gateway.gate = threading.Event()
    leader = asyncio.create_task(world.provider.aget_token())
    await at_gate(world)
    with pytest.raises(RuntimeError, match="aget_token"):
        world.provider.get_token()
    world.gateway.gate.set()
    assert await leader


async def test_lock_taken_while_cancelled_is_given_back() -> None:
    world = make_world()
    world.clock.advance(0)
    lock = world.store.lock(1)
    lock.__enter__()  # another holder
    world.store.lock_wanted.clear()
    task = asyncio.create_task(world.provider.aget_token())
    assert await asyncio.to_thread(world.store.lock_wanted.wait, 10)  # the task waits on it
    task.cancel()
    lock.__exit__(None, None, None)
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):  # the worker thread gets the lock late, then gives it back
        if not world.store.locked:
            break
        await asyncio.sleep(0.01)
    assert not world.store.locked
