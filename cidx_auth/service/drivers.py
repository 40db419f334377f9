"""Run a flow: one sync driver, one async driver, one table of shared handlers.

Only the effects that wait (the network calls, sleeping, taking the lock) have two
implementations; every other effect is answered by the same handler in both.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from cidx_auth.domain.errors import CidxAuthError, LockTimeout, StorageError
from cidx_auth.ports import AsyncAuthGateway, AuthGateway, Clock, CredentialStore, TokenStore
from cidx_auth.service import effects as fx
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.flow import Flow

Handler = Callable[[Any], Any]


class Ports:
    """The ports a flow's effects reach, and the answers every driver shares."""

    def __init__(
        self,
        clock: Clock,
        store: TokenStore,
        credentials: CredentialStore,
        breaker: CircuitBreaker,
        emit: Callable[[Any], None],
        degraded: Callable[[str], None],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.store = store
        self.shared: dict[type, Handler] = {
            fx.Now: lambda _: clock.now(),
            fx.Draw: lambda _: rng(),
            fx.Emit: lambda e: emit(e.event),
            fx.Degraded: lambda e: degraded(e.detail),
            fx.LoadSession: lambda _: store.load(),
            fx.SaveSession: lambda e: store.save(e.session),
            fx.ClearSession: lambda _: store.clear(),
            fx.DiscardSession: lambda _: _discard(store),
            fx.LoadCredentials: lambda _: credentials.load(),
            fx.SaveCredentials: lambda e: credentials.save(e.credentials),
            fx.ClearCredentials: lambda _: credentials.clear(),
            fx.Admit: lambda _: breaker.admit(),
            fx.Record: lambda e: breaker.record(e.failed, e.retry_after),
        }


def _discard(store: TokenStore) -> bool:
    try:
        store.clear()
    except StorageError:
        return False
    return True


class _Held:
    """The lock a flow holds, released however the flow ends."""

    def __init__(self) -> None:
        self.lock: AbstractContextManager[None] | None = None

    def release(self) -> None:
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.__exit__(None, None, None)


def _step(flow: Flow, answer: Any, error: BaseException | None) -> Any:
    return flow.throw(error) if error is not None else flow.send(answer)


def run_sync(flow: Flow, ports: Ports, gateway: AuthGateway) -> Any:
    """Drive ``flow`` to its return value, blocking the calling thread."""
    held = _Held()

    def lock(effect: fx.AcquireLock) -> fx.LockResult:
        manager = ports.store.lock(effect.timeout)
        try:
            manager.__enter__()
        except LockTimeout:
            return fx.LockResult.TIMED_OUT
        except StorageError:
            return fx.LockResult.UNAVAILABLE
        held.lock = manager
        return fx.LockResult.HELD

    waits: dict[type, Handler] = {
        fx.AcquireLock: lock,
        fx.Sleep: lambda e: ports.clock.sleep(e.seconds),
        fx.Login: lambda e: gateway.login(e.credentials),
        fx.Refresh: lambda e: gateway.refresh(e.refresh_token),
    }
    answer: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = _step(flow, answer, error)
            except StopIteration as stop:
                return stop.value
            handler = waits.get(type(effect)) or ports.shared[type(effect)]
            answer, error = None, None
            try:
                answer = handler(effect)
            except CidxAuthError as exc:
                error = exc
    finally:
        held.release()
        flow.close()


_BLOCKING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cidx-auth-io")
"""Where the async driver does blocking storage work. Its own pool, not the loop's
default executor: threads of the default pool may themselves be blocked waiting for
this very renewal (sync callers run with ``asyncio.to_thread``), which would deadlock."""

_ON_LOOP = (fx.Now, fx.Draw)
"""Answers cheap enough for the event loop; everything else may touch a disk or Redis."""


async def run_async(flow: Flow, ports: Ports, gateway: AsyncAuthGateway) -> Any:
    """Drive ``flow`` on the running event loop; blocking work goes to a thread."""
    held = _Held()
    loop = asyncio.get_running_loop()

    async def lock(effect: fx.AcquireLock) -> fx.LockResult:
        manager = ports.store.lock(effect.timeout)
        entering = loop.run_in_executor(_BLOCKING, manager.__enter__)
        try:
            await asyncio.shield(entering)
        except LockTimeout:
            return fx.LockResult.TIMED_OUT
        except StorageError:
            return fx.LockResult.UNAVAILABLE
        except asyncio.CancelledError:
            # The thread may still get the lock after we stop waiting: give it back then.
            entering.add_done_callback(
                lambda done: done.exception() or manager.__exit__(None, None, None)
            )
            raise
        held.lock = manager
        return fx.LockResult.HELD

    waits: dict[type, Callable[[Any], Awaitable[Any]]] = {
        fx.AcquireLock: lock,
        fx.Sleep: lambda e: ports.clock.asleep(e.seconds),
        fx.Login: lambda e: gateway.alogin(e.credentials),
        fx.Refresh: lambda e: gateway.arefresh(e.refresh_token),
    }
    answer: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = _step(flow, answer, error)
            except StopIteration as stop:
                return stop.value
            answer, error = None, None
            try:
                waiting = waits.get(type(effect))
                if waiting is not None:
                    answer = await waiting(effect)
                elif isinstance(effect, _ON_LOOP):
                    answer = ports.shared[type(effect)](effect)
                else:
                    handler = ports.shared[type(effect)]
                    answer = await loop.run_in_executor(_BLOCKING, handler, effect)
            except CidxAuthError as exc:
                error = exc
    finally:
        held.release()
        flow.close()
