"""A replicated Redis in memory, with the rules the Redis token store keeps.

For the fleet simulation (``cidx-auth simulate --fleet``) and tests: one thread, a fake
clock, no sockets. :class:`MemoryRedis` is the server side, a primary and one replica
(Sentinel's case); each process gets its own :class:`MemoryRedisStore`, the
``TokenStore`` port over it, as each process has its own ``RedisTokenStore``::

    redis = MemoryRedis(clock)
    store = redis.client()            # one per simulated process
    with store.lock(0.0):
        store.save(session)           # fenced, then confirmed by the replica (WAIT)

The rules, as ``adapters/redis_token_store.py`` applies them to a real Redis:

- **Replication is asynchronous.** Every write (a session, a lock taken or released)
  goes to the primary and into the replication stream; the replica applies the stream
  at :meth:`MemoryRedis.replicate` (the driver's tick) or when a WAIT confirms it.
- **Writes under the lock are fenced**: made only while this holder's token is still
  the lock's value, else :class:`StorageError` and nothing written.
- **Fenced writes are confirmed** (WAIT 1 replica, bounded): the write counts only once
  the replica has everything up to it. A replica that does not confirm in time
  (``lag``) makes the write fail with :class:`StorageError`, although it stays on the
  primary (it replicates later, or a failover loses it). ``confirm_writes=False`` is a
  primary whose acknowledgement alone counts: the unsafe store the tests hold up
  against the real rule.
- **A lost acknowledgement** (``lost_acks``): the write happened, the reply did not
  arrive, the caller gets :class:`StorageError` (and, under the lock, sends no WAIT).
- **A failover** (:meth:`MemoryRedis.failover`) makes the replica the primary: every
  write it had not applied is lost, the lock's included; a new replica syncs from it.
- **The lease.** A live holder keeps extending its lease (the store's keeper thread),
  so the lock lasts while the holder holds it; it runs out ``lease`` seconds after the
  holder stopped extending it without deleting it: killed, or its release lost in a
  failover. The keeper's cut-off after 300 s (``MAX_HOLD``) is not modelled.
- **A held lock**: one thread cannot wait for another simulated process, so a caller
  that would wait calls ``on_wait(lease_end, timeout)`` (``inf``: a live holder), which
  may raise to let its driver reschedule the caller; if it returns, or there is none,
  the caller sleeps the clock to the lease's end if that comes within ``timeout`` and
  takes the lock, else sleeps ``timeout`` and raises :class:`LockTimeout`. ``timeout`` 0
  never waits.

Reads go to the primary and never fail here; the store's local read cache, its codec
and its damaged-value handling are the real adapter's, tested there, and left out.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from cidx_auth.domain.errors import LockTimeout, StorageError
from cidx_auth.domain.token import Session
from cidx_auth.ports import Clock


@dataclass(frozen=True, slots=True)
class Keyspace:
    """What one Redis node holds: the session's key and the lock's (a holder's token)."""

    session: Session | None = None
    lock: int | None = None


class MemoryRedis:
    """A primary and its replica, the replication stream between them, and the faults.

    ``lag`` and ``lost_acks`` are probabilities per write, drawn with ``draw`` (a seeded
    ``random.Random().random``); ``lag_next`` and ``lose_acks_next`` force the next ones.
    ``faults`` counts what happened: ``lag``, ``lost_ack``, ``fenced_out``,
    ``failover``, ``lost_writes`` (writes a failover lost).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        lease: float = 30.0,
        confirm_writes: bool = True,
        lag: float = 0.0,
        lost_acks: float = 0.0,
        draw: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.lease = lease
        self.confirm_writes = confirm_writes
        self.lag = lag
        self.lost_acks = lost_acks
        self.lag_next = 0
        self.lose_acks_next = 0
        self.primary = Keyspace()
        self.replica = Keyspace()
        self.faults: Counter[str] = Counter()
        self.on_wait: Callable[[float, float], None] | None = None
        self._draw = draw or (lambda: 1.0)
        self._stream: list[Callable[[Keyspace], Keyspace]] = []
        self._tokens = itertools.count(1)
        self._held: set[int] = set()
        """Tokens whose holders are alive and inside their lock block: lease extended."""
        self._let_go_at: dict[int, float] = {}

    def client(self) -> MemoryRedisStore:
        """A store for one process, with its own lock token while it holds the lock."""
        return MemoryRedisStore(self)

    @property
    def unreplicated(self) -> int:
        """Writes the primary made that the replica has not applied yet."""
        return len(self._stream)

    def replicate(self) -> None:
        """The replica catches up with the primary."""
        for change in self._stream:
            self.replica = change(self.replica)
        self._stream.clear()

    def failover(self) -> None:
        """The replica becomes the primary; what it had not applied is gone."""
        self.faults["failover"] += 1
        self.faults["lost_writes"] += len(self._stream)
        self._stream.clear()
        self.primary = self.replica

    def lease_end(self) -> float | None:
        """When the lock on the primary stops holding (``inf`` while its holder lives and
        holds it); None when there is no lock, or its lease has run out."""
        token = self.primary.lock
        if token is None:
            return None
        end = math.inf if token in self._held else self._let_go_at[token] + self.lease
        if self.clock.now() >= end:
            self.primary = replace(self.primary, lock=None)  # expired: Redis drops the key
            return None
        return end

    # ---- what the clients send -------------------------------------------------------

    def _write(self, change: Callable[[Keyspace], Keyspace]) -> None:
        self.primary = change(self.primary)
        self._stream.append(change)

    def _acknowledged(self) -> None:
        """The reply to a write that was made; a lost one is an error all the same."""
        if self._happens("lose_acks_next", self.lost_acks):
            self.faults["lost_ack"] += 1
            raise StorageError("the reply from Redis was lost (the write may have happened)")

    def _confirmed(self) -> None:
        """WAIT for the replica: everything written so far, or :class:`StorageError`."""
        if not self.confirm_writes:
            return
        if self._happens("lag_next", self.lag):
            self.faults["lag"] += 1
            raise StorageError("the replica did not confirm the write in time (WAIT)")
        self.replicate()

    def _happens(self, forced: str, rate: float) -> bool:
        if getattr(self, forced) > 0:
            setattr(self, forced, getattr(self, forced) - 1)
            return True
        return rate > 0 and self._draw() < rate

    def _take(self, timeout: float) -> int:
        end = self.lease_end()
        if end is not None:
            if timeout <= 0:
                raise LockTimeout("the token lock is held by another process (no wait)")
            if self.on_wait is not None:
                self.on_wait(end, timeout)
            now = self.clock.now()
            self.clock.sleep(min(end - now, timeout))
            if end - now > timeout:
                raise LockTimeout(f"the token lock is held by another process; gave up "
                                  f"after {timeout:.1f} s")
            self.lease_end()
        token = next(self._tokens)
        self._held.add(token)
        self._write(lambda space: replace(space, lock=token))
        return token

    def _let_go(self, token: int, *, release: bool) -> None:
        self._held.discard(token)
        self._let_go_at[token] = self.clock.now()
        if release and self.primary.lock == token:  # compare-and-delete
            self._write(lambda space: replace(space, lock=None))

    def _fenced(self, token: int, session: Session | None) -> None:
        if self.lease_end() is None or self.primary.lock != token:
            self.faults["fenced_out"] += 1
            raise StorageError("the token lock's lease ran out before the write; another "
                               "process holds the lock now, so nothing was written")
        self._write(lambda space: replace(space, session=session))
        self._acknowledged()
        self._confirmed()


class MemoryRedisStore:
    """The ``TokenStore`` port for one process over :class:`MemoryRedis`."""

    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis
        self.dead = False
        self._token: int | None = None

    def load(self) -> Session | None:
        return self.redis.primary.session

    def save(self, session: Session) -> None:
        self._put(session)

    def clear(self) -> None:
        self._put(None)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        self._token = token = self.redis._take(timeout)
        try:
            yield
        finally:
            self._token = None
            # A killed process releases nothing: its lease runs out by itself.
            self.redis._let_go(token, release=not self.dead)

    def kill(self) -> None:
        """The process dies where it stands: it stops extending its lease, and the
        unwinding of its stack releases nothing."""
        self.dead = True
        if self._token is not None:
            self.redis._let_go(self._token, release=False)

    def _put(self, session: Session | None) -> None:
        if self.dead:
            raise StorageError("this process is dead")
        if self._token is None:  # outside the lock: a plain SET or DEL, not confirmed
            self.redis._write(lambda space: replace(space, session=session))
            self.redis._acknowledged()
        else:
            self.redis._fenced(self._token, session)
