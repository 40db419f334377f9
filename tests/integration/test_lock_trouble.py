"""The file lock when its lock file is not ours, or cannot be flocked (decisions.md,
"Lock trouble" and "Trust boundaries").

A link, a non-regular file or another user's file at the lock path is refused with a
plain ``StorageError`` (exit 5) and left exactly as it was. A lock file of our own that
flock cannot use falls back to an ``O_EXCL`` marker beside it, which a dead holder does
not keep; only when that fails too is the lock ``LockUnavailable``.

Root ignores mode bits, so ``chattr +i`` makes a file or directory unusable; each test
checks that a write really fails first, and the bit is always cleared again. Other
holders are real processes that say when they hold the lock (events, not sleeps).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import multiprocessing
import os
import stat
import time
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

import adapters.file_lock as file_lock_module
from adapters.file_lock import _clear_abandoned_marker, file_lock
from cidx_auth.domain.errors import CidxAuthError, LockTimeout, LockUnavailable, StorageError
from tests.integration.immutable_files import Immutable

pytestmark = [pytest.mark.posix, pytest.mark.slow]

SPAWN = multiprocessing.get_context("spawn")
OTHER_UID = 2002
BASHRC = b"export PATH=$HOME/bin:$PATH\n"
NEEDS_ROOT = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root, to make a file owned by another uid",
)


def refuse_flock(*args: object) -> None:
    """flock as it fails on NFS without lockd (ENOLCK)."""
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


def no_flock() -> None:
    """In a child process: flock fails from now on."""
    fcntl.flock = refuse_flock  # type: ignore[assignment]


def hold(lock_path: str, entered: Event, release: Event, without_flock: bool = False) -> None:
    """Child process: hold the lock until ``release`` is set."""
    if without_flock:
        no_flock()
    with file_lock(Path(lock_path), 30, "the test lock"):
        entered.set()
        release.wait(120)


def take_once(lock_path: str, timeout: float, without_flock: bool = False) -> None:
    """Child process: take the lock and let it go; exit with the error's exit code."""
    if without_flock:
        no_flock()
    try:
        with file_lock(Path(lock_path), timeout, "the test lock"):
            pass
    except CidxAuthError as error:
        raise SystemExit(error.exit_code) from None


@contextlib.contextmanager
def held_elsewhere(
    lock_path: Path, without_flock: bool = False
) -> Iterator[multiprocessing.process.BaseProcess]:
    """Another process holds the lock for the ``with`` block (or until it is killed)."""
    entered, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(
        target=hold, args=(str(lock_path), entered, release, without_flock)
    )
    holder.start()
    try:
        assert entered.wait(60), "the holder never took the lock"
        yield holder
    finally:
        if holder.is_alive():  # a holder killed while waiting would hang Event.set
            release.set()
        holder.join(60)
        if holder.is_alive():
            holder.kill()
            holder.join()


def exit_code_of_taking(
    lock_path: Path, timeout: float, without_flock: bool = False
) -> int | None:
    """Take and release the lock in a fresh process; its exit code (0: it held it)."""
    child = SPAWN.Process(target=take_once, args=(str(lock_path), timeout, without_flock))
    child.start()
    child.join(120)
    return child.exitcode


@pytest.fixture
def store(tmp_path: Path) -> Path:
    directory = tmp_path / ".code-indexer"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def lock_path(store: Path) -> Path:
    return store / ".token.lock"


def own_lock_file(lock_path: Path) -> Path:
    lock_path.touch(mode=0o600)
    return lock_path


def snapshot(path: Path) -> tuple[int, int, int, bytes]:
    status = os.lstat(path)
    return status.st_mode, status.st_uid, status.st_ino, path.read_bytes()


def refused(lock_path: Path) -> StorageError:
    """The lock is refused with a plain StorageError: exit 5, never the fallback."""
    with pytest.raises(StorageError) as caught, file_lock(lock_path, 5, "the token lock"):
        pytest.fail("the lock was taken")
    assert not isinstance(caught.value, LockUnavailable)
    assert caught.value.exit_code == 5
    assert "Remove it if you did not create it" in str(caught.value)
    assert not lock_path.with_name(lock_path.name + ".excl").exists()
    return caught.value


# a. Lock files that are not ours ---------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(
    tmp_path: Path, lock_path: Path, dangling: bool
) -> None:
    target = tmp_path / "bashrc"
    if not dangling:
        target.write_bytes(BASHRC)
        target.chmod(0o644)
        before = snapshot(target)
    lock_path.symlink_to(target)

    assert "is a symbolic link" in str(refused(lock_path))

    assert lock_path.is_symlink() and os.readlink(lock_path) == str(target)
    if dangling:
        assert not target.exists()  # O_CREAT did not follow the link
    else:
        assert snapshot(target) == before  # neither truncated nor chmod'ed


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_lock_path_that_is_not_a_regular_file_is_refused(lock_path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(lock_path, 0o600)
    else:
        lock_path.mkdir(mode=0o700)

    assert "is not a regular file" in str(refused(lock_path))

    mode = os.lstat(lock_path).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISDIR(mode)


@NEEDS_ROOT
def test_a_lock_file_of_another_user_is_refused_and_left_untouched(lock_path: Path) -> None:
    lock_path.write_bytes(b"theirs")
    os.chown(lock_path, OTHER_UID, OTHER_UID)
    lock_path.chmod(0o644)
    before = snapshot(lock_path)

    assert f"owned by another user (uid {OTHER_UID})" in str(refused(lock_path))
    assert snapshot(lock_path) == before


@NEEDS_ROOT
def test_an_unusable_lock_file_of_another_user_is_refused_not_bypassed(
    lock_path: Path, immutable: Immutable
) -> None:
    lock_path.write_bytes(b"theirs")
    os.chown(lock_path, OTHER_UID, OTHER_UID)
    immutable.set(lock_path)

    assert "owned by another user" in str(refused(lock_path))


def test_a_symlinked_fallback_marker_is_refused(
    tmp_path: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bashrc"
    target.write_bytes(BASHRC)
    excl = lock_path.with_name(lock_path.name + ".excl")
    excl.symlink_to(target)
    own_lock_file(lock_path)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)

    with (
        pytest.raises(StorageError, match="is a symbolic link") as caught,
        file_lock(lock_path, 5, "the token lock"),
    ):
        pytest.fail("the lock was taken")
    assert not isinstance(caught.value, LockUnavailable)
    assert excl.is_symlink() and target.read_bytes() == BASHRC


# a'. Swapped between the check and the open -------------------------------------------


def swapped_after_the_check(
    monkeypatch: pytest.MonkeyPatch, lock_path: Path, swap: Callable[[], None]
) -> None:
    """Run ``swap`` right after the lock's first look at ``lock_path`` (the ``lstat``
    check), before it opens the file: another process winning that race."""
    check = file_lock_module.refuse_unless_ours
    swapped: list[bool] = []

    def then_swap(path: Path, status: os.stat_result | None = None) -> None:
        check(path, status)
        if status is None and path == lock_path and not swapped:
            swapped.append(True)
            swap()

    monkeypatch.setattr(file_lock_module, "refuse_unless_ours", then_swap)


def test_a_link_swapped_in_after_the_check_is_not_followed(
    tmp_path: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open itself refuses a link (``O_NOFOLLOW``): the ``lstat`` before it cannot
    see a link planted a moment later, which would lead the open, the flock and the mode
    correction to the user's ``.bashrc``."""
    victim = tmp_path / "bashrc"
    victim.write_bytes(BASHRC)
    victim.chmod(0o644)
    before = snapshot(victim)
    own_lock_file(lock_path)
    swapped_after_the_check(
        monkeypatch, lock_path, lambda: (lock_path.unlink(), lock_path.symlink_to(victim)))

    with pytest.raises(StorageError) as caught, file_lock(lock_path, 5, "the token lock"):
        pytest.fail("the lock was taken through a link")

    assert caught.value.exit_code == 5
    assert f"could not open the token lock ({lock_path})" in str(caught.value)
    assert snapshot(victim) == before  # neither chmod'ed nor written
    assert lock_path.is_symlink()  # left as it was found


def test_a_fifo_swapped_in_after_the_check_is_refused_by_the_check_of_what_was_opened(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was opened is checked again (``fstat``): a FIFO swapped in after the first
    look opens without blocking (``O_NONBLOCK``), and is then refused, its mode kept."""
    own_lock_file(lock_path)

    def to_fifo() -> None:
        lock_path.unlink()
        os.mkfifo(lock_path)
        lock_path.chmod(0o644)

    swapped_after_the_check(monkeypatch, lock_path, to_fifo)

    assert "is not a regular file" in str(refused(lock_path))
    status = os.lstat(lock_path)
    assert stat.S_ISFIFO(status.st_mode) and stat.S_IMODE(status.st_mode) == 0o644


# b. A lock file of our own --------------------------------------------------------------


def test_a_wide_lock_file_is_narrowed_through_its_descriptor_and_keeps_its_content(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lock_path.write_bytes(b"left by an older version")
    lock_path.chmod(0o666)
    inode = lock_path.stat().st_ino

    def no_chmod_by_path(*args: object, **kwargs: object) -> None:
        pytest.fail(f"os.chmod{args} follows a path; the mode must be set through the fd")

    monkeypatch.setattr(os, "chmod", no_chmod_by_path)
    with (
        caplog.at_level(logging.WARNING, logger="cidx_auth.storage"),
        file_lock(lock_path, 5, "the token lock"),
    ):
        assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600
    assert "had mode 666" in caplog.text
    assert lock_path.read_bytes() == b"left by an older version"  # no O_TRUNC
    assert lock_path.stat().st_ino == inode


def test_a_lock_file_with_a_second_name_keeps_its_mode(tmp_path: Path, lock_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(BASHRC)
    elsewhere.chmod(0o644)
    os.link(elsewhere, lock_path)

    with file_lock(lock_path, 5, "the token lock"):
        pass
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
    assert elsewhere.read_bytes() == BASHRC


def test_a_lock_held_past_the_timeout_is_a_lock_timeout(lock_path: Path) -> None:
    with (
        held_elsewhere(lock_path),
        pytest.raises(LockTimeout) as caught,
        file_lock(lock_path, 0.2, "the token lock"),
    ):
        pytest.fail("the lock was taken while another process held it")
    assert not isinstance(caught.value, StorageError) and caught.value.exit_code == 4
    assert str(caught.value) == (
        "the token lock is held by another cidx process; gave up after 0.2 s"
    )
    with file_lock(lock_path, 5, "the token lock"):  # released: free again
        pass


# c. flock impossible: the O_EXCL fallback -----------------------------------------------


def test_an_immutable_lock_file_is_flocked_read_only(
    lock_path: Path, immutable: Immutable
) -> None:
    """flock needs no write access: every process locks the same inode, also one that
    opened it before it became immutable. No marker file is needed."""
    immutable.set(own_lock_file(lock_path))
    excl = lock_path.with_name(lock_path.name + ".excl")

    with held_elsewhere(lock_path):
        assert exit_code_of_taking(lock_path, 0.3) == LockTimeout.exit_code
        with pytest.raises(LockTimeout), file_lock(lock_path, 0.2, "the token lock"):
            pytest.fail("the lock was taken while another process held it")
    assert exit_code_of_taking(lock_path, 30) == 0  # released: the next one enters
    assert not excl.exists()


def test_without_flock_the_lock_falls_back_to_an_exclusive_marker(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    own_lock_file(lock_path)
    excl = lock_path.with_name(lock_path.name + ".excl")

    with held_elsewhere(lock_path, without_flock=True) as holder:
        assert str(holder.pid) in excl.read_text()  # the marker names its holder
        assert exit_code_of_taking(lock_path, 0.3, without_flock=True) == LockTimeout.exit_code
    assert not excl.exists()
    assert exit_code_of_taking(lock_path, 30, without_flock=True) == 0  # the next one enters

    monkeypatch.setattr(fcntl, "flock", refuse_flock)
    with (
        caplog.at_level(logging.INFO, logger="cidx_auth.storage"),
        file_lock(lock_path, 5, "the token lock"),
    ):
        assert excl.exists()
    assert "cannot flock" in caplog.text and "No locks available" in caplog.text
    assert not excl.exists() and lock_path.read_bytes() == b""


def test_a_fallback_marker_left_by_a_killed_holder_does_not_keep_the_lock(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = lock_path.with_name(lock_path.name + ".excl")

    with held_elsewhere(lock_path, without_flock=True) as holder:
        holder.kill()  # SIGKILL: no cleanup of any kind
        holder.join()  # reaped: its pid names no process now
        assert str(holder.pid) in excl.read_text()  # it died holding the marker

        monkeypatch.setattr(fcntl, "flock", refuse_flock)
        with file_lock(lock_path, 30, "the token lock"):
            assert str(os.getpid()) in excl.read_text()
            assert exit_code_of_taking(lock_path, 0.3, without_flock=True) == LockTimeout.exit_code
    assert not excl.exists()


@pytest.mark.parametrize("lock_file_exists", [True, False], ids=["lock-file", "no-lock-file"])
def test_no_lock_at_all_is_lock_unavailable(
    store: Path, lock_path: Path, immutable: Immutable, lock_file_exists: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if lock_file_exists:  # flock fails on it, and no marker can be made beside it
        own_lock_file(lock_path)
        monkeypatch.setattr(fcntl, "flock", refuse_flock)
    immutable.set(store)  # without a lock file, none can be created either

    with pytest.raises(LockUnavailable) as caught, file_lock(lock_path, 5, "the token lock"):
        pytest.fail("a lock was taken")
    message = str(caught.value)
    assert str(lock_path) in message and "Operation not permitted" in message
    assert caught.value.exit_code == 5
    assert sorted(store.iterdir()) == ([lock_path] if lock_file_exists else [])


# d. A marker left behind (issue 21, item 2) --------------------------------------------
#
# filelock never breaks an empty marker; ours is taken over once it is older than anyone
# may hold the lock. Ages are set with os.utime, never waited for.

LONG_AGO = 1000.0  # seconds: far past the 65 s anyone may hold the lock


def marker_of(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".excl")


def empty_marker(lock_path: Path, age: float) -> Path:
    excl = marker_of(lock_path)
    excl.touch(mode=0o600)
    past = time.time() - age
    os.utime(excl, (past, past))
    return excl


def leftovers(store: Path) -> list[str]:
    """Files a takeover could leave behind (placeholders, markers set aside)."""
    return sorted(p.name for p in store.iterdir() if ".takeover." in p.name)


def test_an_empty_marker_older_than_the_lock_wait_is_taken_over_at_once(
    store: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own_lock_file(lock_path)
    excl = empty_marker(lock_path, LONG_AGO)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)

    # A wait of 0 s: taken at the first try, or this raises LockTimeout.
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), \
            file_lock(lock_path, 0, "the token lock"):
        assert str(os.getpid()) in excl.read_text()  # our marker, with our record
    assert "took over" in caplog.text and str(excl) in caplog.text
    assert not excl.exists() and leftovers(store) == []
    with file_lock(lock_path, 0, "the token lock"):  # and the lock works as before
        pass


def test_the_default_threshold_is_the_token_lock_wait(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)
    empty_marker(lock_path, 55)  # younger than 2D + 5 = 65 s: a holder may still be there
    with pytest.raises(LockTimeout), file_lock(lock_path, 0, "the token lock"):
        pytest.fail("a marker younger than the lock wait was taken")
    empty_marker(lock_path, 75)  # older: nobody holds a lock that long
    with file_lock(lock_path, 0, "the token lock"):
        pass


def test_a_fresh_empty_marker_still_blocks_until_the_timeout_and_is_named(
    store: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = empty_marker(lock_path, 0)
    before = snapshot(excl)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)

    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught, file_lock(lock_path, 0.3, "the token lock"):
        pytest.fail("a fresh marker was taken")
    assert time.monotonic() - started >= 0.3  # the wait was waited out
    assert caught.value.exit_code == 4
    message = str(caught.value)
    assert message.startswith("the token lock is held by another cidx process; gave up "
                              "after 0.3 s; the lock marker ")
    assert f"{excl} is still there (empty: it names no holder)" in message
    assert f"remove it (rm -- {excl})" in message and "if no cidx process is running" in message
    assert caught.value.remedy in message
    assert snapshot(excl) == before and leftovers(store) == []


def test_a_marker_that_ages_past_the_threshold_during_the_wait_is_taken_then(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = empty_marker(lock_path, 0)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)
    readings = iter([time.time()])  # the first look finds it fresh; later ones, old

    def clock() -> float:
        return next(readings, time.time() + LONG_AGO)

    with file_lock(lock_path, 30, "the token lock", now=clock):
        assert str(os.getpid()) in excl.read_text()
    assert next(readings, None) is None  # it was judged fresh first


def test_a_symlinked_old_marker_is_refused_and_never_followed(
    tmp_path: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "empty-and-old"
    target.touch(mode=0o600)
    past = time.time() - LONG_AGO
    os.utime(target, (past, past))
    excl = marker_of(lock_path)
    excl.symlink_to(target)
    own_lock_file(lock_path)
    before = snapshot(target)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)

    with pytest.raises(StorageError, match="is a symbolic link"), \
            file_lock(lock_path, 0, "the token lock"):
        pytest.fail("the lock was taken")
    assert excl.is_symlink() and os.readlink(excl) == str(target)
    assert snapshot(target) == before
    # Should the link appear after that check, the takeover itself does not follow it.
    assert not _clear_abandoned_marker(excl, time.time())
    assert excl.is_symlink() and snapshot(target) == before


@NEEDS_ROOT
def test_an_old_empty_marker_of_another_user_is_never_taken(
    store: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = empty_marker(lock_path, LONG_AGO)
    os.chown(excl, OTHER_UID, OTHER_UID)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    before = snapshot(excl)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)

    with pytest.raises(StorageError, match=f"owned by another user .uid {OTHER_UID}.") as caught, \
            file_lock(lock_path, 0, "the token lock"):
        pytest.fail("another user's marker was taken")
    assert caught.value.exit_code == 5
    assert not _clear_abandoned_marker(excl, time.time())  # nor by the takeover itself
    assert snapshot(excl) == before and leftovers(store) == []


def test_only_an_empty_regular_marker_with_one_name_is_taken(store: Path, tmp_path: Path) -> None:
    excl = store / "marker"
    excl.write_bytes(b"1234\nsomehost\n")  # it names a holder: filelock's to judge
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    assert not _clear_abandoned_marker(excl, time.time())
    excl.write_bytes(b"")
    os.link(excl, tmp_path / "second-name")
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    assert not _clear_abandoned_marker(excl, time.time())  # a second name: not ours alone
    (tmp_path / "second-name").unlink()
    assert not _clear_abandoned_marker(excl, time.time() - 2 * LONG_AGO)  # young enough
    assert _clear_abandoned_marker(excl, time.time())
    assert not excl.exists() and leftovers(store) == []


def test_a_live_holders_marker_is_never_taken_even_when_old(
    store: Path, lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = marker_of(lock_path)
    with held_elsewhere(lock_path, without_flock=True) as holder:
        os.utime(excl, (time.time() - LONG_AGO,) * 2)  # old, but it names a live holder
        before = snapshot(excl)
        assert exit_code_of_taking(lock_path, 0.3, without_flock=True) == LockTimeout.exit_code
        monkeypatch.setattr(fcntl, "flock", refuse_flock)
        with pytest.raises(LockTimeout) as caught, file_lock(lock_path, 0.2, "the token lock"):
            pytest.fail("a live holder's marker was taken")
        assert f"it names pid {holder.pid} on host " in str(caught.value)
        assert snapshot(excl) == before and leftovers(store) == []
    assert not excl.exists()  # the holder let it go itself


def test_a_fallback_marker_of_a_killed_holder_is_taken_at_once(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_lock_file(lock_path)
    excl = marker_of(lock_path)
    with held_elsewhere(lock_path, without_flock=True) as holder:
        holder.kill()
        holder.join()
        monkeypatch.setattr(fcntl, "flock", refuse_flock)
        with file_lock(lock_path, 0, "the token lock"):  # a wait of 0 s: the first try
            assert str(os.getpid()) in excl.read_text()


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_a_marker_replaced_after_it_was_judged_is_put_back(
    store: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Two takers judged the same abandoned marker; the other won and a holder made a
    fresh marker: this one's takeover must hand that marker back, not remove it."""
    if not exchange:  # as on NFS, where renameat2 cannot exchange
        monkeypatch.setattr(file_lock_module, "_exchange", lambda source, target: False)
    excl = store / ".token.lock.excl"
    excl.touch(mode=0o600)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    judged = os.lstat(excl)
    fd = os.open(excl, os.O_RDONLY)  # keeps the judged inode's number from being reused
    try:
        excl.unlink()  # the other taker removed it...
        excl.write_bytes(b"filelock/2\npid=1\nhost=h\nmode=exclusive\n")  # ...a holder's now
        holders = snapshot(excl)
        assert not file_lock_module._swap_out(excl, judged)
    finally:
        os.close(fd)
    assert snapshot(excl) == holders and leftovers(store) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_the_takeover_without_exchange_still_takes_the_judged_marker(
    store: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(file_lock_module, "_exchange", lambda source, target: False)
    excl = store / ".token.lock.excl"
    excl.touch(mode=0o600)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    assert _clear_abandoned_marker(excl, time.time())
    assert sorted(p.name for p in store.iterdir()) == []


def at_once(target: Callable[..., None], *args: str, processes: int = 4) -> list[int | None]:
    """Run ``target(*args, start)`` in ``processes`` processes released together by the
    event ``start``; their exit codes, in order."""
    start = SPAWN.Event()
    takers = [SPAWN.Process(target=target, args=(*args, start)) for _ in range(processes)]
    for taker in takers:
        taker.start()
    start.set()
    for taker in takers:
        taker.join(120)
    return [taker.exitcode for taker in takers]


def race_to_take_over(marker: str, start: Event) -> None:
    """Child process: take over ``marker`` when told; exit 0 if this one won."""
    start.wait(60)
    raise SystemExit(0 if _clear_abandoned_marker(Path(marker), time.time()) else 3)


def test_of_takers_racing_for_one_abandoned_marker_one_wins(store: Path) -> None:
    excl = store / ".token.lock.excl"
    excl.touch(mode=0o600)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    assert sorted(at_once(race_to_take_over, str(excl))) == [0, 3, 3, 3]
    assert sorted(p.name for p in store.iterdir()) == []


def hold_counting(lock_path: str, inside: str, start: Event) -> None:
    """Child process: take the lock (flock failing) and prove no one else is inside."""
    no_flock()
    start.wait(60)
    with file_lock(Path(lock_path), 60, "the test lock"):
        fd = os.open(inside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # fails if shared
        os.close(fd)
        os.unlink(inside)


def test_processes_racing_through_an_abandoned_marker_still_exclude_each_other(
    store: Path, lock_path: Path
) -> None:
    own_lock_file(lock_path)
    excl = empty_marker(lock_path, LONG_AGO)
    inside = store / "inside"
    assert at_once(hold_counting, str(lock_path), str(inside)) == [0, 0, 0, 0]
    assert not excl.exists() and not inside.exists() and leftovers(store) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_a_takeover_in_progress_elsewhere_stops_this_one(
    store: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Renaming aside leaves the path empty for a moment, and a second exchange can swap
    the first taker's placeholder back onto the path: a second taker could then move away
    the marker a third process just made, or strand a placeholder that blocks everyone.
    Takers go one at a time, under a guard."""
    if not exchange:
        monkeypatch.setattr(file_lock_module, "_exchange", lambda source, target: False)
    excl = store / ".token.lock.excl"
    excl.touch(mode=0o600)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    guard = store / ".token.lock.excl.takeover"
    guard.touch(mode=0o600)  # another taker holds it (its rename is under way)
    before = snapshot(excl), snapshot(guard)

    assert not _clear_abandoned_marker(excl, time.time())

    assert (snapshot(excl), snapshot(guard)) == before  # neither moved nor removed
    guard.unlink()  # that taker done: the next try takes the abandoned marker
    assert _clear_abandoned_marker(excl, time.time())
    assert sorted(p.name for p in store.iterdir()) == []


def test_a_timeout_on_a_marker_names_a_guard_left_by_a_killed_taker(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fcntl, "flock", refuse_flock)
    monkeypatch.setattr(file_lock_module, "_exchange", lambda source, target: False)
    excl = lock_path.with_name(lock_path.name + ".excl")
    excl.touch(mode=0o600)
    os.utime(excl, (time.time() - LONG_AGO,) * 2)
    guard = excl.with_name(excl.name + ".takeover")
    guard.touch(mode=0o600)

    with pytest.raises(LockTimeout) as timeout, file_lock(lock_path, 0, "the token lock"):
        pass

    message = str(timeout.value)
    assert f"and so is {guard} (left by an interrupted takeover)" in message
    assert f"remove them (rm -- {excl} {guard})" in message
    assert excl.exists() and guard.exists()


class _ClockAhead:
    """The ``time`` module as this host sees it, with its clock ``ahead`` seconds ahead of
    the file system's (an NFS server's) clock."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_marker_is_judged_old_on_the_clock_of_its_file_system(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose clock runs ahead of the file server's must not find a marker made
    just now "older than anyone may hold the lock": it is stamped by the server."""
    excl = store / ".token.lock.excl"
    excl.touch(mode=0o600)  # made just now, on the file system's clock
    monkeypatch.setattr(file_lock_module, "time", _ClockAhead(2 * LONG_AGO))
    ahead = file_lock_module.time.time()

    assert not _clear_abandoned_marker(excl, ahead - LONG_AGO)  # old only by this clock
    assert excl.exists() and not (store / ".token.lock.excl.takeover").exists()
    os.utime(excl, (time.time() - 2 * LONG_AGO,) * 2)  # old on the file system's clock too
    assert _clear_abandoned_marker(excl, ahead - LONG_AGO)
