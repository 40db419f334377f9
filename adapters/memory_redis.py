"""A replicated Redis in memory, with the rules the Redis token store keeps.

For the fleet simulation (``cidx-auth simulate --fleet``) and tests: one thread, a fake
clock, no sockets. :class:`MemoryRedis` is the server side, a primary and one replica
managed by Sentinel; each process gets its own :class:`MemoryRedisStore`, the
``TokenStore`` port over it, as each process has its own ``RedisTokenStore``::

    redis = MemoryRedis(clock)
    store = redis.client()            # one per simulated process
    with store.lock(0.0):
        store.save(session)           # fenced, then confirmed by the replica (WAIT)

The rules, as ``adapters/redis_token_store.py`` applies them to a real Redis:

- **Replication is asynchronous.** Every write (a session, a lock taken, extended or
  released) goes to the primary and into the replication stream; the replica applies
  the stream at :meth:`MemoryRedis.replicate` (the driver's tick) or when a WAIT
  confirms it.
- **The lock is a key with a lease**: its holder's token and an absolute expiry, set to
  ``lease`` (30 s) from now when it is taken. While its holder lives and holds it, the
  holder's keeper extends it to ``lease`` from then every ``lease / 3`` seconds of the
  fake clock; each extension is a write, replicated like any other, so the replica's
  copy of the lock expires ``lease`` after the last extension it received. A keeper that
  finds the lock gone (or another holder's) stops; one that cannot reach the primary
  tries again at its next turn. A killed holder stops extending: its lease runs out.
  The keeper's cut-off after 300 s (``MAX_HOLD``) is not modelled.
- **Writes under the lock are fenced**: made only while this holder's token is still
  the lock's value, else :class:`StorageError` and nothing written.
- **Fenced writes are confirmed** (WAIT, bounded by ``replica_wait``): the write counts
  only once the replica has everything up to it. A replica that does not confirm in time
  (``lag``) makes the write fail with :class:`StorageError` after ``replica_wait`` of the
  fake clock, although it stays on the primary (it replicates later, or a failover loses
  it). With no replica connected, a store reached through Sentinel (``sentinel``) still
  waits for one, so every write under the lock fails the same way; otherwise a lone
  primary's acknowledgement counts. ``confirm_writes=False`` is a primary whose
  acknowledgement alone counts: the unsafe store the tests hold up against the real rule.
- **A lost acknowledgement** (``lost_acks``): the write happened, the reply did not
  arrive, the caller gets :class:`StorageError` (and, under the lock, sends no WAIT).
- **A failover** (:meth:`MemoryRedis.failover`) is the primary failing: every write the
  replica had not applied is lost, and for ``failover_takes`` seconds (Sentinel's
  ``down-after-milliseconds``, 30 s by default, plus its election and the promotion)
  there is no primary: taking the lock raises :class:`LockUnavailable`; a write, and a
  read under the lock, :class:`StorageError`; a read outside the lock gets the process's
  last loaded session if the rules still judge it usable, without its refresh token,
  else :class:`StorageError` (the Redis store's outage copy); a release is lost, and a
  keeper's extension fails. Then the replica is promoted as it was: a lock whose expiry
  has passed is gone. The new primary has no replica until the old one rejoins
  (``rejoin_after`` later) and syncs from it; until then there is nothing to fail over
  to, so :meth:`MemoryRedis.failover` refuses.
- **A held lock**: one thread cannot wait for another simulated process, so a caller
  that would wait calls ``on_wait(lease_end, timeout)`` (``inf``: a live holder whose
  keeper will extend the lease), which may raise to let its driver reschedule the
  caller; if it returns, or there is none, the caller sleeps the clock to the lease's
  end if that comes within ``timeout`` and takes the lock, else sleeps ``timeout`` and
  raises :class:`LockTimeout`. ``timeout`` 0 never waits.

Reads go to the primary; the store's one-second read cache, its codec and its
damaged-value handling are the real adapter's, tested there, and left out.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from cidx_auth.domain.errors import LockTimeout, LockUnavailable, StorageError
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Session
from cidx_auth.ports import Clock

DEFAULT_LEASE = 30.0
"""As ``adapters/redis_token_store.py`` (not imported: it needs the redis package)."""
REPLICA_WAIT = 1.0
FAILOVER_TAKES = 35.0
"""Sentinel's default ``down-after-milliseconds`` (30 s), then an election and the
promotion (a few seconds)."""
REJOIN_AFTER = 120.0
"""From the promotion until the old primary is back as a replica: the failure that took
it down (a crash, a reboot, a cut link) was long enough for Sentinel to act."""
_PROMOTION, _REJOIN = -1, -2
"""What :meth:`MemoryRedis._catch_up` plays besides keepers' turns (keyed by token > 0)."""


@dataclass(frozen=True, slots=True)
class Lock:
    """The lock's key: its holder's token, and when it expires."""

    token: int
    expires: float


@dataclass(frozen=True, slots=True)
class Keyspace:
    """What one Redis node holds: the session's key and the lock's."""

    session: Session | None = None
    lock: Lock | None = None

    def at(self, now: float) -> Keyspace:
        """The keyspace as a client sees it at ``now``: an expired lock is gone."""
        if self.lock is not None and self.lock.expires <= now:
            return replace(self, lock=None)
        return self


class MemoryRedis:
    """A primary and its replica, the replication stream between them, and the faults.

    ``lag`` and ``lost_acks`` are probabilities per write, drawn with ``draw`` (a seeded
    ``random.Random().random``); ``lag_next`` and ``lose_acks_next`` force the next ones.
    ``faults`` counts what happened: ``lag``, ``lost_ack``, ``no_replica`` (writes under
    the lock no replica could confirm), ``fenced_out``, ``failover``, ``lost_writes``
    (writes a failover lost), ``unavailable`` (calls refused during a failover),
    ``lease_lost`` (keepers that found their lock gone).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        lease: float = DEFAULT_LEASE,
        confirm_writes: bool = True,
        sentinel: bool = True,
        replica_wait: float = REPLICA_WAIT,
        failover_takes: float = FAILOVER_TAKES,
        rejoin_after: float = REJOIN_AFTER,
        lag: float = 0.0,
        lost_acks: float = 0.0,
        draw: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.lease = lease
        self.confirm_writes = confirm_writes
        self.sentinel = sentinel
        self.replica_wait = replica_wait
        self.failover_takes = failover_takes
        self.rejoin_after = rejoin_after
        self.lag = lag
        self.lost_acks = lost_acks
        self.lag_next = 0
        self.lose_acks_next = 0
        self._faults: Counter[str] = Counter()
        self.on_wait: Callable[[float, float], None] | None = None
        self._primary = Keyspace()
        self._replica: Keyspace | None = Keyspace()
        self._draw = draw or (lambda: 1.0)
        self._stream: list[Callable[[Keyspace], Keyspace]] = []
        self._tokens = itertools.count(1)
        self._keepers: dict[int, float] = {}
        """Live holders' tokens, and when each one's keeper extends the lease next."""
        self._promote_at: float | None = None
        self._rejoin_at: float | None = None

    def client(self, rules: Rules | None = None) -> MemoryRedisStore:
        """A store for one process, with its own lock token while it holds the lock."""
        return MemoryRedisStore(self, rules or Rules())

    @property
    def faults(self) -> Counter[str]:
        """What happened so far, by kind (see the class's doc)."""
        self._catch_up()
        return self._faults

    @property
    def primary(self) -> Keyspace:
        """What the primary holds now (during a failover: what the failed one held)."""
        self._catch_up()
        return self._primary.at(self.clock.now())

    @property
    def replica(self) -> Keyspace | None:
        """What the replica holds now; None while none is connected."""
        self._catch_up()
        return self._replica

    @property
    def available(self) -> bool:
        """False while a failover is under way: no primary to talk to."""
        self._catch_up()
        return self._promote_at is None

    @property
    def can_fail_over(self) -> bool:
        """A primary is up and a replica is connected to take over from it."""
        return self.available and self._replica is not None

    @property
    def unreplicated(self) -> int:
        """Writes the primary made that the replica has not applied yet."""
        self._catch_up()
        return len(self._stream)

    def replicate(self) -> None:
        """The replica catches up with the primary."""
        self._catch_up()
        if self._replica is not None:
            for change in self._stream:
                self._replica = change(self._replica)
        self._stream.clear()

    def failover(self) -> None:
        """The primary fails: what the replica had not applied is gone, and the replica
        is promoted ``failover_takes`` seconds from now."""
        if not self.can_fail_over:
            raise RuntimeError("no failover now: one is under way, or no replica is connected")
        self._faults["failover"] += 1
        self._faults["lost_writes"] += len(self._stream)
        self._stream.clear()
        self._promote_at = self.clock.now() + self.failover_takes
        self._catch_up()

    def lease_end(self) -> float | None:
        """When the lock on the primary stops holding (``inf`` while its holder's keeper
        will extend it in time); None when there is no lock, or its lease has run out."""
        self._catch_up()
        self._primary = self._primary.at(self.clock.now())  # expired: Redis drops the key
        lock = self._primary.lock
        if lock is None:
            return None
        extends_at = self._keepers.get(lock.token, math.inf)
        return math.inf if extends_at < lock.expires else lock.expires

    # ---- time: keepers' extensions, the promotion, the old primary's return ----------

    def _catch_up(self) -> None:
        """Play what happened on the server up to now, in its order."""
        if not self._keepers and self._promote_at is None and self._rejoin_at is None:
            return  # nothing pending: the common case, kept cheap
        now = self.clock.now()
        while True:
            due = [(when, token) for token, when in self._keepers.items()]
            if self._promote_at is not None:
                due.append((self._promote_at, _PROMOTION))
            if self._rejoin_at is not None:
                due.append((self._rejoin_at, _REJOIN))
            when, what = min(due, default=(math.inf, 0))
            if when > now:
                return
            if what == _PROMOTION:
                self._promote(when)
            elif what == _REJOIN:
                self._replica, self._rejoin_at = self._primary, None  # a full sync
            else:
                self._extend(what, when)

    def _promote(self, when: float) -> None:
        assert self._replica is not None
        self._primary, self._replica = self._replica.at(when), None
        self._promote_at, self._rejoin_at = None, when + self.rejoin_after

    def _extend(self, token: int, when: float) -> None:
        """One turn of ``token``'s keeper at ``when``: PEXPIRE if it is still its lock."""
        self._keepers[token] = when + self.lease / 3
        if self._promote_at is not None:
            return  # Redis unreachable: the keeper warns and tries again next turn
        lock = self._primary.at(when).lock
        if lock is None or lock.token != token:
            del self._keepers[token]  # LockError: the keeper warns and stops
            self._faults["lease_lost"] += 1
            return
        self._write(lambda space: replace(space, lock=Lock(token, when + self.lease)))

    # ---- what the clients send -------------------------------------------------------

    def _up(self, error: type[StorageError], action: str) -> None:
        """Raise ``error`` if no primary answers (a failover is under way)."""
        if not self.available:
            self._faults["unavailable"] += 1
            raise error(f"could not {action} Redis: its primary is down and Sentinel has "
                        "not promoted the replica yet")

    def _write(self, change: Callable[[Keyspace], Keyspace]) -> None:
        self._primary = change(self._primary)
        if self._replica is not None:
            self._stream.append(change)

    def _acknowledged(self) -> None:
        """The reply to a write that was made; a lost one is an error all the same."""
        if self._happens("lose_acks_next", self.lost_acks):
            self._faults["lost_ack"] += 1
            raise StorageError("the reply from Redis was lost (the write may have happened)")

    def _confirmed(self) -> None:
        """WAIT for the replica: everything written so far, or :class:`StorageError`."""
        if not self.confirm_writes or (self._replica is None and not self.sentinel):
            return  # nobody to wait for: the primary's word counts
        if self._replica is None:
            self._faults["no_replica"] += 1
            self.clock.sleep(self.replica_wait)
            raise StorageError("the write was confirmed by 0 of 1 replica(s) in time (WAIT): "
                               "no replica is connected to the primary")
        if self._happens("lag_next", self.lag):
            self._faults["lag"] += 1
            self.clock.sleep(self.replica_wait)
            raise StorageError("the replica did not confirm the write in time (WAIT)")
        self.replicate()

    def _happens(self, forced: str, rate: float) -> bool:
        if getattr(self, forced) > 0:
            setattr(self, forced, getattr(self, forced) - 1)
            return True
        return rate > 0 and self._draw() < rate

    def _take(self, timeout: float) -> int:
        deadline = self.clock.now() + timeout
        while True:
            self._up(LockUnavailable, "take the token lock in")
            end = self.lease_end()
            if end is None:
                break
            if timeout <= 0:
                raise LockTimeout("the token lock is held by another process (no wait)")
            now = self.clock.now()
            if self.on_wait is not None:
                self.on_wait(end, deadline - now)
            if end > deadline:
                self.clock.sleep(deadline - now)
                raise LockTimeout(f"the token lock is held by another process; gave up "
                                  f"after {timeout:.1f} s")
            self.clock.sleep(end - now)
        token, now = next(self._tokens), self.clock.now()
        self._keepers[token] = now + self.lease / 3
        self._write(lambda space: replace(space, lock=Lock(token, now + self.lease)))
        return token

    def _let_go(self, token: int, *, release: bool) -> None:
        """The holder's keeper stops; ``release``: compare-and-delete, if Redis answers."""
        self._catch_up()
        self._keepers.pop(token, None)
        if not release or self._promote_at is not None:
            return  # killed, or Redis unreachable: the lease runs out by itself
        lock = self._primary.at(self.clock.now()).lock
        if lock is not None and lock.token == token:
            self._write(lambda space: replace(space, lock=None))

    def _fenced(self, token: int, session: Session | None) -> None:
        end = self.lease_end()
        if end is None or self._primary.lock is None or self._primary.lock.token != token:
            self._faults["fenced_out"] += 1
            raise StorageError("the token lock's lease ran out before the write; another "
                               "process holds the lock now, so nothing was written")
        self._write(lambda space: replace(space, session=session))
        self._acknowledged()
        self._confirmed()


class MemoryRedisStore:
    """The ``TokenStore`` port for one process over :class:`MemoryRedis`."""

    def __init__(self, redis: MemoryRedis, rules: Rules) -> None:
        self.redis = redis
        self.dead = False
        self._rules = rules
        self._token: int | None = None
        self._last: Session | None = None
        """The last session loaded or saved: the outage copy."""

    def load(self) -> Session | None:
        last = self._last
        if (not self.redis.available and self._token is None and last is not None
                and self._rules.judge(last, self.redis.clock.now()).usable):
            return replace(last, refresh_token=None)  # another host may have spent it since
        self.redis._up(StorageError, "read the session from")
        self._last = session = self.redis.primary.session
        return session

    def save(self, session: Session) -> None:
        self._put(session)
        self._last = session

    def clear(self) -> None:
        self._last = None
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
        self.redis._up(StorageError, "write the session to")
        if self._token is None:  # outside the lock: a plain SET or DEL, not confirmed
            self.redis._write(lambda space: replace(space, session=session))
            self.redis._acknowledged()
        else:
            self.redis._fenced(self._token, session)
