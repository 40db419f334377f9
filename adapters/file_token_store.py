"""The session in ``.code-indexer/.token``: encrypted, replaced atomically, shared.

Format: the file holds one Fernet token (URL-safe base64 text); its plaintext is
``json.dumps(session_to_dict(session, stored_at))``, which carries its own format
version. Readers take no lock: a write is an atomic rename, so a reader sees a whole
old file or a whole new one. Writers (the core's refresh and login) hold :meth:`lock`.

A damaged file never reaches the caller (errata #7): truncated, random, foreign (other
project, user or machine), bad JSON, missing fields, a symlink, a FIFO, over 64 KiB.
Another program's file (not a Fernet token: the CIDX client's ``.token``) is not
damage: it is reported at INFO and left alone, never set aside, overwritten or removed.
Under the lock it is moved aside as ``.token.corrupt-<time>`` (the 3 newest are kept),
a WARNING without secrets is logged, and :meth:`load` returns None so the provider
logs in again. The lock is what makes this safe: the file is moved only if it is
still the very file that was read, and only while no writer can replace it. If the
lock cannot be had quickly, the file is left alone (the next writer replaces it).

Permissions: a file found with a mode other than 0600 is corrected, with a WARNING,
and its content is still used. Discarding it would not revoke a session that may have
leaked: it would only force a new login. And the file's bytes alone are useless to
whoever read them: the key needs the per-user secret, which lives outside the project.

Cache: the last session loaded or saved is kept for :data:`CACHE_TTL` seconds, and
dropped at once when the file's identity (inode, mtime, size) changes, so a process
sees another's refresh on its next load at the cost of one ``stat``. A load while this
store holds the lock always reads the file.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.file_io import (
    MAX_FILE_SIZE,
    Identity,
    info,
    is_foreign,
    read_private,
    refuse_foreign,
    stat_identity,
    storage_error,
    warn,
    write_private,
)
from adapters.file_quarantine import quarantine, remove_set_aside
from adapters.session_codec import decode_session, encode_session
from cidx_auth.domain.errors import CorruptStore, LockTimeout, StorageError
from cidx_auth.domain.token import Session

if TYPE_CHECKING:  # the ports module pulls in the breaker and events: not needed to read
    from cidx_auth.ports import Cipher

CACHE_TTL = 60.0
QUARANTINE_LOCK_TIMEOUT = 0.5
"""How long :meth:`FileTokenStore.load` waits for the lock to set a damaged file aside."""


class _Cached:
    """The last session read or written, the file it came from, and when."""

    __slots__ = ("at", "identity", "session")

    def __init__(self, session: Session, identity: Identity, at: float) -> None:
        self.session = session
        self.identity = identity
        self.at = at


class FileTokenStore:
    """The ``TokenStore`` port over an encrypted file and a stable lock file beside it."""

    def __init__(
        self,
        path: Path,
        lock_path: Path,
        cipher: Cipher,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = CACHE_TTL,
        quarantine_timeout: float = QUARANTINE_LOCK_TIMEOUT,
    ) -> None:
        self.path = path
        self.lock_path = lock_path
        self._cipher = cipher
        self._clock = clock
        self._ttl = cache_ttl
        self._quarantine_timeout = quarantine_timeout
        self._cache: _Cached | None = None
        self._mutex = threading.Lock()
        """Orders this process's replace and set-aside of the file."""
        self._holding = 0

    def load(self) -> Session | None:
        """The stored session; None when there is none or it was damaged (and set aside)."""
        seen = stat_identity(self.path)
        cached = self._cache
        if seen is None:
            self._cache = None
            return None
        # Under the lock the file itself answers: the renewal decides there whether to
        # present the stored refresh token, and no cache may stand in for that.
        if cached is not None and cached.identity == seen and self._young(cached) \
                and not self._holding:
            return cached.session
        data = b""
        try:
            found = read_private(self.path, ours=lambda data: not is_foreign(data))
            if found is None:
                return None
            data, seen = found
            session = self._decode(data)
        except CorruptStore as damage:
            if is_foreign(data):  # another program's: not ours to move
                info("%s is not in cidx-auth's format (another program's file); left alone",
                     self.path)
                return None
            self._set_aside(seen, str(damage))
            return None
        self._cache = _Cached(session, seen, self._clock())
        return session

    def save(self, session: Session) -> None:
        """Replace the stored session atomically. The caller holds :meth:`lock`."""
        now = self._clock()
        blob = encode_session(session, self._cipher, now)
        if len(blob) > MAX_FILE_SIZE:
            raise StorageError("the session is too large to store; nothing was written")
        refuse_foreign(self.path, "token")
        with self._mutex:
            self._cache = None
            written = write_private(self.path, blob, sweep_young=self._holding > 0, now=now)
            self._cache = _Cached(session, written, now)

    def clear(self) -> None:
        """Remove the stored session and every copy of it set aside as damaged (log
        out): a set-aside copy may still decrypt to a refresh token. The caller holds
        :meth:`lock`."""
        refuse_foreign(self.path, "token")
        with self._mutex:
            self._cache = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError as error:
                raise storage_error("remove", self.path, error) from error
            remove_set_aside(self.path)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Exclusive across processes and across stores in one process."""
        from adapters.file_lock import file_lock  # a process that only reads never locks

        with file_lock(self.lock_path, timeout, "the token lock"):
            with self._mutex:
                self._holding += 1
            try:
                yield
            finally:
                with self._mutex:
                    self._holding -= 1

    def _young(self, cached: _Cached) -> bool:
        return 0 <= self._clock() - cached.at < self._ttl

    def _decode(self, data: bytes) -> Session:
        return decode_session(data, self._cipher)

    def _set_aside(self, seen: Identity, reason: str) -> None:
        self._cache = None
        # When this store holds the lock (the core reloads under it, maybe on another
        # thread), no other process can write; the mutex orders this process's writes.
        if self._holding:
            moved = self._quarantine(seen)
        else:
            try:
                with self.lock(self._quarantine_timeout):
                    moved = self._quarantine(seen)
            except (StorageError, LockTimeout):
                moved = False
        warn(
            "the stored token could not be used (%s); %s", reason,
            "moved it aside, a new one will be obtained" if moved
            else "left it in place (it changed meanwhile, or another process holds the lock)",
        )

    def _quarantine(self, seen: Identity) -> bool:
        with self._mutex:
            try:
                return quarantine(self.path, seen, self._clock())
            except StorageError:
                return False
