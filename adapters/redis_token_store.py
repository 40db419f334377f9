"""The session in Redis, shared by every host of a fleet, under a distributed lock.

Key: :func:`identity_key` gives one key per service identity (server URL and
username), ``cidx-auth:token:{<32 hex>}``. The braces are a Redis Cluster hash tag: the
lock ``<key>:lock`` and the set-aside ``<key>:corrupt`` land in the same slot as the
token, which the Lua scripts below need. The value is the file store's payload,
unchanged: one Fernet token over ``json.dumps(session_to_dict(...))``, keyed by the
identity (``adapters.fernet_cipher.identity_cipher``), so every host with the same
secret can read it.

TTL: the access token's remaining life plus :data:`REFRESH_MARGIN` (7 days). The
access token dies first, but its refresh token outlives it by a span the server
does not announce; a week lets a fleet idle over a long weekend come back with one
refresh instead of a login, and an identity nobody uses any more vanishes by itself.

Lock: redis-py's ``Lock`` on ``<key>:lock`` (SET NX PX, compare-and-delete release)
with a lease of ``lease`` seconds: a holder killed mid-refresh blocks the others for
at most that long, so the lease must outlast one refresh with its retries (30 s by
default). ``thread_local=False``: a lock may be released on another thread than took it.
With Redis unreachable, taking the lock raises :class:`LockUnavailable`.
Saves and clears under the lock are fenced: they write (or delete) only while this
holder's token is still the lock's value, so a holder that stalled past its lease
cannot overwrite or remove what the next one stored; its save or clear fails as a
:class:`StorageError` and leaves the key alone; the core keeps the access token in
memory and says so. Outside the lock they are plain SET and DEL.

Replicas: Redis replicates asynchronously, so a write the primary acknowledged can be
lost when a replica is promoted (a failover). A fenced write (the intent, a rotated
session, a logout) counts only once the replicas have it: the same connection sends
``WAIT`` after it, for every replica the primary reports connected (``ROLE``), bounded
by :data:`REPLICA_WAIT`, and for at least one behind Sentinel (``redis+sentinel://``),
where replicas exist by design. A write not confirmed in time fails as a
:class:`StorageError` (it may still be on the primary): an intent not confirmed is never
followed by the refresh token it guards (the core logs in instead), so a refresh token a
promoted replica still holds is one nobody presented. A plain primary with no replica
connected counts on its own acknowledgement, as a single node must (``architecture.md``
says what that leaves open, and the primary setting that closes it).

A value that does not decrypt or parse is reported with a WARNING (no secrets) and,
only by the lock holder and only if it is still the value read, renamed to
``<key>:corrupt`` for a day; otherwise it is left for the next writer to replace.

Cache: the last good session, reused by loads outside the lock for ``local_cache_ttl``
seconds; a load under the lock always asks Redis, where the decision to refresh is
taken, and fails with :class:`StorageError` if Redis does not answer. Outside the lock,
with Redis unreachable, :meth:`load` returns the cached session while the project's rules
still judge it usable (``Rules.judge``), without its refresh token (another host may
have spent it since), with a WARNING, else raises :class:`StorageError`. redis-py's
exceptions never leave this module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.exceptions import LockError, NoPermissionError, RedisError

from adapters.digests import sha256
from adapters.fernet_cipher import normalized_server
from adapters.file_io import MAX_FILE_SIZE, warn
from adapters.redis_connection import describe, failure_hint, is_sentinel_managed, redact_url
from adapters.session_codec import decode_session, encode_session
from cidx_auth.domain.errors import CorruptStore, LockTimeout, LockUnavailable, StorageError
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Session

if TYPE_CHECKING:
    from cidx_auth.ports import Cipher

REFRESH_MARGIN = 7 * 24 * 3600.0
DEFAULT_LEASE = 30.0
MAX_HOLD = 300.0
"""Longest a live process keeps extending its lease: beyond any renewal's worst case."""
LOCAL_CACHE_TTL = 1.0
REPLICA_WAIT = 1.0
"""Longest a write under the lock waits for its replicas' confirmation (``WAIT``); at
most half the client's socket timeout, so the reply comes before the socket gives up."""
LOCK_POLL = 0.05
"""How often a waiting process retries the lock: short, since a refresh takes ~100 ms."""
CORRUPT_KEEP = 24 * 3600

_FENCED_SET = """
if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""
_FENCED_DELETE = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1], KEYS[3])
return 1
"""
_FENCED_SET_ASIDE = """
if redis.call('get', KEYS[3]) ~= ARGV[2] or redis.call('get', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('rename', KEYS[1], KEYS[2])
redis.call('expire', KEYS[2], ARGV[3])
return 1
"""


def _replicas(role: Any) -> int:
    """How many replicas a ``ROLE`` reply lists as connected: 0 unless a primary's."""
    primary = bool(role) and role[0] in (b"master", "master")
    return len(role[2]) if primary and len(role) > 2 else 0


def identity_key(server_url: str, username: str) -> str:
    """The Redis key of the session shared by every host logged in as ``username``."""
    identity = f"{normalized_server(server_url)}\0{username}".encode()
    return f"cidx-auth:token:{{{sha256(identity).hex()[:32]}}}"


def ttl_for(session: Session, now: float) -> int:
    """Seconds the key should live: the token's remaining life plus the refresh margin."""
    remaining = session.token.exp - session.clock_offset - now
    return math.ceil(max(remaining, 0.0) + REFRESH_MARGIN)


class RedisTokenStore:
    """The ``TokenStore`` port over one Redis key and a redis-py lock beside it."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        cipher: Cipher,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = DEFAULT_LEASE,
        local_cache_ttl: float = LOCAL_CACHE_TTL,
        url: str | None = None,
        rules: Rules,
        replica_wait: float = REPLICA_WAIT,
        replicated: bool | None = None,
    ) -> None:
        self.key = key
        self._rules = rules
        """The project's rules: whether a cached session may still stand in for Redis."""
        self.lock_name = f"{key}:lock"
        self.url = redact_url(url) if url else describe(client)
        self._client = client
        self._cipher = cipher
        self._clock = clock
        self._lease = lease
        self._ttl = local_cache_ttl
        self._cache: tuple[Session, float] | None = None
        self._token: bytes | None = None
        """The lock token while this store holds the lock; fences its writes."""
        self._mutex = threading.Lock()
        self._set = client.register_script(_FENCED_SET)
        self._delete = client.register_script(_FENCED_DELETE)
        self._set_aside_script = client.register_script(_FENCED_SET_ASIDE)
        self._replicated = is_sentinel_managed(client) if replicated is None else replicated
        """Replicas exist by design (Sentinel): a write under the lock needs one's word."""
        self._may_ask_role = True
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._replica_wait = (replica_wait if not socket_timeout
                              else min(replica_wait, float(socket_timeout) / 2))

    def load(self) -> Session | None:
        """The shared session; None when there is none or it is damaged."""
        now = self._clock()
        cached = self._cache
        if cached is not None and self._token is None and 0 <= now - cached[1] < self._ttl:
            return cached[0]
        try:
            blob = self._client.get(self.key)
        except RedisError as error:
            if self._token is not None:  # under the lock only Redis itself may answer
                raise self._unavailable(error, "read the session from") from None
            return self._cached_or_fail(error)
        if blob is None:
            self._cache = None
            return None
        data = blob.encode() if isinstance(blob, str) else blob
        try:
            session = self._decode(data)
        except CorruptStore as damage:
            self._set_aside(data, str(damage))
            return None
        self._cache = (session, now)
        return session

    def save(self, session: Session) -> None:
        """Store ``session`` with its TTL; under the lock, only while the lease holds."""
        now = self._clock()
        blob = encode_session(session, self._cipher, now)
        ttl = ttl_for(session, now)
        token = self._token
        try:
            if token is None:
                self._client.set(self.key, blob, ex=ttl)
            elif not self._fenced(self._set, [self.key, self.lock_name], [blob, token, ttl],
                                  "saved to"):
                raise self._lease_lost("saved to", "this one keeps its access token in memory")
        except RedisError as error:
            raise self._unavailable(error, "save the session to") from None
        self._cache = (session, now)

    def clear(self) -> None:
        """Remove the shared session and its set-aside copy (log out): every host of the
        fleet loses it, and nothing that may decrypt to a refresh token stays behind.

        Under the lock, only while the lease holds: a holder that lost it must not
        delete the session the next holder stored.
        """
        self._cache = None
        token = self._token
        corrupt = f"{self.key}:corrupt"
        try:
            if token is None:
                self._client.delete(self.key, corrupt)
            elif not self._fenced(self._delete, [self.key, self.lock_name, corrupt], [token],
                                  "removed from"):
                raise self._lease_lost("removed from", "nothing was deleted")
        except RedisError as error:
            raise self._unavailable(error, "remove the session from") from None

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Exclusive across every process on every host sharing this key."""
        lock = self._client.lock(
            self.lock_name, timeout=self._lease, sleep=LOCK_POLL,
            blocking_timeout=timeout, thread_local=False,
        )
        try:
            acquired = lock.acquire()
        except LockError:
            acquired = False
        except RedisError as error:
            # No lock can be had while Redis is down: the core then logs in rather than
            # present the shared refresh token without it (the ownership rule).
            raise LockUnavailable(
                f"could not take the token lock in Redis at {self.url} ({failure_hint(error)})"
            ) from None
        if not acquired:
            raise LockTimeout(
                f"the token lock in Redis at {self.url} is held by another cidx process "
                f"(on this or another host); gave up after {timeout:.1f} s"
            )
        self._token = token = cast(bytes, lock.local.token)
        released = threading.Event()
        keeper = threading.Thread(
            target=self._keep_lease, args=(lock, released), name="cidx-auth-lease", daemon=True
        )
        keeper.start()
        try:
            yield
        finally:
            released.set()
            keeper.join()
            with self._mutex:
                if self._token == token:
                    self._token = None
            self._release(lock)

    def _fenced(self, script: Any, keys: list[str], args: list[Any], action: str) -> bool:
        """Run a fenced ``script``; True when it wrote, and its write is confirmed by the
        replicas it needs (:meth:`_replicas_needed`) within the wait bound, else
        :class:`StorageError`. One pipeline, so one connection, carries the write, its
        ``WAIT`` (which waits for what that connection wrote) and a ``ROLE`` after them:
        the node that took the write must not have had more replicas than confirmed it
        (the ``ROLE`` before may have reached another node, mid-failover)."""
        needed = self._replicas_needed()
        if needed == 0:
            return bool(script(keys=keys, args=args))
        pipe = self._client.pipeline(transaction=False)
        script(keys=keys, args=args, client=pipe)
        pipe.wait(needed, max(1, round(self._replica_wait * 1000)))
        if self._may_ask_role:
            cast(Any, pipe).execute_command("ROLE")
        wrote, confirmed, *role = pipe.execute()
        if not wrote:
            return False
        needed = max(needed, _replicas(role[0]) if role else 0)
        if int(confirmed) < needed:
            raise StorageError(
                f"the session {action} Redis at {self.url} was confirmed by {int(confirmed)} "
                f"of {needed} replica(s) within {self._replica_wait:g} s, so it does not count "
                "as written (a failover could lose it); check the replicas' link to the "
                "primary"
            )
        return True

    def _replicas_needed(self) -> int:
        """How many replicas must confirm a write under the lock: every one the primary
        reports connected (``ROLE``), and at least one behind Sentinel, where replicas
        exist by design (a primary cut off from them must not confirm alone). A Redis
        user that may not run ``ROLE`` (an ``@dangerous`` command) gets these minimums."""
        minimum = 1 if self._replicated else 0
        if not self._may_ask_role:
            return minimum
        try:
            role = cast(Any, self._client).execute_command("ROLE")
        except NoPermissionError:
            self._may_ask_role = False
            logging.getLogger(__name__).info(
                "the Redis user of the store at %s may not run ROLE; %s", self.url,
                "writes wait for one replica (Sentinel)" if minimum else
                "writes count on the primary's acknowledgement (grant +role to have them "
                "confirmed by its replicas)")
            return minimum
        return max(minimum, _replicas(role))

    def _keep_lease(self, lock: Any, released: threading.Event) -> None:
        """Extend the lease while this process holds the lock.

        One renewal can outlast any fixed lease (three attempts, each up to 10 s to
        connect and 30 s to read, plus Retry-After waits): were the lease to run out
        meanwhile, another host would take the lock and present the refresh token this
        one is presenting, and the server would revoke the family. A crashed holder
        stops extending, so its lease still runs out; a hung one is cut off at
        :data:`MAX_HOLD`.
        """
        deadline = time.monotonic() + MAX_HOLD
        while not released.wait(self._lease / 3) and time.monotonic() < deadline:
            try:
                lock.extend(self._lease, replace_ttl=True)
            except LockError:
                warn("the token lock's lease in Redis at %s was lost; another process may "
                     "take over", self.url)
                return
            except RedisError as error:
                warn("could not extend the token lock's lease in Redis at %s (%s)",
                     self.url, type(error).__name__)

    def _release(self, lock: Any) -> None:
        try:
            lock.release()
        except LockError:  # LockNotOwnedError: the lease ran out while we held it
            warn("the token lock's %g s lease in Redis at %s ran out before it was released; "
                 "another process may have taken over meanwhile", self._lease, self.url)
        except RedisError as error:
            warn("could not release the token lock in Redis at %s (%s); it expires by "
                 "itself within %g s", self.url, type(error).__name__, self._lease)

    def _decode(self, data: bytes) -> Session:
        if len(data) > MAX_FILE_SIZE:
            raise CorruptStore(f"the stored value is larger than {MAX_FILE_SIZE} bytes")
        return decode_session(data, self._cipher)

    def _set_aside(self, data: bytes, reason: str) -> None:
        self._cache = None
        moved, token = False, self._token
        if token is not None:
            keys = [self.key, f"{self.key}:corrupt", self.lock_name]
            with contextlib.suppress(RedisError):
                moved = bool(self._set_aside_script(keys=keys, args=[data, token, CORRUPT_KEEP]))
        warn(
            "the shared token in Redis at %s could not be used (%s; every host sharing it "
            "needs the same per-user secret); %s", self.url, reason,
            "set it aside as <key>:corrupt for a day, a new one will be obtained" if moved
            else "left it in place for the lock holder to replace",
        )

    def _cached_or_fail(self, error: RedisError) -> Session:
        cached = self._cache
        if cached is not None:
            session = cached[0]
            if self._rules.judge(session, self._clock()).usable:
                warn("Redis at %s cannot be reached (%s); using the token this process "
                     "loaded last, still valid", self.url, type(error).__name__)
                # Its refresh token may have been spent by another host since: a copy
                # from memory is never one to present.
                return replace(session, refresh_token=None)
        raise self._unavailable(error, "read the session from") from None

    def _lease_lost(self, action: str, outcome: str) -> StorageError:
        return StorageError(
            f"the token lock's {self._lease:g} s lease ran out before the session was "
            f"{action} Redis at {self.url}; another process holds the lock now, so "
            f"{outcome} (raise the lease if this recurs)"
        )

    def _unavailable(self, error: RedisError, action: str) -> StorageError:
        return StorageError(f"could not {action} Redis at {self.url} ({failure_hint(error)})")
