"""The steps of taking over an abandoned lock marker (decisions.md, "Lock trouble"; the
file_lock module's docstring).

The takeover swaps an empty placeholder of ours onto the marker's path with
``renameat2(RENAME_EXCHANGE)``, so the path never stands empty; where the exchange is
refused (NFS, an old C library, another system) it renames the marker aside instead.
Either way it keeps only the very file it judged, puts back anything else exactly as it
was (a link as a link), never overwrites a successor's marker, follows no link and leaves
nothing of its own behind. Races are staged by hand, with the judged inode held open so
that its number cannot be reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import adapters.file_lock as file_lock_module
from adapters.file_lock import _clear_abandoned_marker, _exchange, _swap_out

pytestmark = [pytest.mark.posix, pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="renameat2 is Linux's")]

LONG_AGO = 1000.0  # seconds: far past the 65 s anyone may hold the lock
HOLDERS_MARKER = b"filelock/2\npid=1\nhost=elsewhere\nmode=exclusive\n"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    directory = tmp_path / ".code-indexer"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def marker(store: Path) -> Path:
    """An abandoned marker: empty, ours, one name, old."""
    path = store / ".token.lock.excl"
    path.touch(mode=0o600)
    os.utime(path, (time.time() - LONG_AGO,) * 2)
    return path


@pytest.fixture
def fresh_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """renameat2 is looked up again (the module keeps what it found the first time)."""
    monkeypatch.setattr(file_lock_module, "_RENAMEAT2", [])


def without_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_lock_module, "_exchange", lambda source, target: False)


def names_in(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


@contextlib.contextmanager
def judged_then_replaced(marker: Path) -> Iterator[os.stat_result]:
    """The marker as a taker judged it; the block replaces it. Its inode is kept alive."""
    judged = os.lstat(marker)
    fd = os.open(marker, os.O_RDONLY)
    try:
        marker.unlink()
        yield judged
    finally:
        os.close(fd)


# renameat2 itself --------------------------------------------------------------------

def test_the_exchange_swaps_two_names_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_lookup: None
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("first").write_bytes(b"1")
    Path("second").write_bytes(b"2")
    assert _exchange(Path("first"), Path("second"))  # relative names: from the cwd
    assert (Path("first").read_bytes(), Path("second").read_bytes()) == (b"2", b"1")


def test_an_exchange_with_a_missing_name_is_an_error_naming_it(
    tmp_path: Path, fresh_lookup: None
) -> None:
    source = tmp_path / "placeholder"
    source.touch()
    with pytest.raises(FileNotFoundError) as caught:
        _exchange(source, tmp_path / "gone")
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOENT, "No such file or directory", str(source))
    assert names_in(tmp_path) == ["placeholder"]


def test_an_exchange_the_kernel_refuses_is_false_and_moves_nothing(
    tmp_path: Path, fresh_lookup: None
) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    assert not _exchange(outer, inner)  # EINVAL, as where the file system cannot exchange
    assert outer.is_dir() and inner.is_dir()


def no_renameat2_in_the_c_library(name: str | None, use_errno: bool = False) -> object:
    return object()  # an old C library (glibc < 2.28): the attribute is missing


def no_c_library(name: str | None, use_errno: bool = False) -> object:
    raise OSError("the C library cannot be loaded")


@pytest.mark.parametrize("where", ["old-c-library", "no-c-library", "not-linux"])
def test_without_renameat2_nothing_is_exchanged_and_the_takeover_renames_aside(
    store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch, fresh_lookup: None, where: str
) -> None:
    if where == "old-c-library":
        monkeypatch.setattr(ctypes, "CDLL", no_renameat2_in_the_c_library)
    elif where == "no-c-library":
        monkeypatch.setattr(ctypes, "CDLL", no_c_library)
    else:
        monkeypatch.setattr(sys, "platform", "darwin")
    other = store / "other"
    other.write_bytes(b"other")
    marker_before = os.lstat(marker)

    assert not _exchange(other, marker)
    assert os.path.samestat(os.lstat(marker), marker_before)
    assert other.read_bytes() == b"other"
    assert _clear_abandoned_marker(marker, time.time())
    assert names_in(store) == ["other"]


# what the takeover swaps in, and what it puts back ------------------------------------

def test_the_placeholder_standing_on_the_path_is_private(
    store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    exchange = file_lock_module._exchange

    def exchange_and_look(source: Path, target: Path) -> bool:
        done = exchange(source, target)
        modes.append(stat.S_IMODE(os.lstat(target).st_mode))
        return done

    monkeypatch.setattr(file_lock_module, "_exchange", exchange_and_look)
    old_umask = os.umask(0o022)
    try:
        assert _clear_abandoned_marker(marker, time.time())
    finally:
        os.umask(old_umask)
    assert modes == [0o600] and names_in(store) == []


def test_a_link_planted_at_the_placeholder_name_is_not_followed(
    tmp_path: Path, store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(BASHRC := b"export PATH=$HOME/bin:$PATH\n")
    monkeypatch.setattr(secrets, "token_hex", lambda nbytes=None: "guessed")
    planted = store / f"{marker.name}.takeover.{os.getpid()}.guessed"
    planted.symlink_to(victim)

    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert not _clear_abandoned_marker(marker, time.time())

    assert f"could not take over {marker}: File exists" in caplog.text
    assert marker.exists() and not marker.is_symlink() and marker.read_bytes() == b""
    assert planted.is_symlink() and victim.read_bytes() == BASHRC
    assert os.lstat(victim).st_nlink == 1


def test_a_takeover_that_fails_midway_leaves_no_placeholder_and_the_marker_as_it_was(
    store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def exchange_fails(source: Path, target: Path) -> bool:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(source))

    monkeypatch.setattr(file_lock_module, "_exchange", exchange_fails)
    before = os.lstat(marker)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert not _clear_abandoned_marker(marker, time.time())
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"could not take over {marker}: Input/output error")]
    assert names_in(store) == [marker.name]  # no placeholder, no guard
    assert os.path.samestat(os.lstat(marker), before)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_an_empty_marker_made_meanwhile_with_the_same_mtime_is_not_taken(
    store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """A holder from before filelock 3.22 keeps its marker empty; one made after the judged
    marker went, with the same timestamp (a coarse clock, a restored copy), is another
    file all the same, and stays."""
    if not exchange:
        without_exchange(monkeypatch)
    with judged_then_replaced(marker) as judged:
        marker.touch(mode=0o600)
        os.utime(marker, ns=(judged.st_atime_ns, judged.st_mtime_ns))
        successor = os.lstat(marker)
        assert not _swap_out(marker, judged)
    assert os.path.samestat(os.lstat(marker), successor)
    assert names_in(store) == [marker.name]


def test_a_successors_marker_made_while_the_path_stood_empty_is_never_overwritten(
    store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed aside, the taken file proves not to be the judged one; a successor made its
    marker in that moment: the taken file is not linked back over it."""
    without_exchange(monkeypatch)
    rename = os.rename

    def rename_then_a_successor_comes(source: Path, target: Path) -> None:
        rename(source, target)
        if Path(source) == marker:
            marker.write_bytes(b"filelock/2\npid=2\nhost=successor\nmode=exclusive\n")

    with judged_then_replaced(marker) as judged:
        marker.write_bytes(HOLDERS_MARKER)
        monkeypatch.setattr(os, "rename", rename_then_a_successor_comes)
        assert not _swap_out(marker, judged)
    assert marker.read_bytes() == b"filelock/2\npid=2\nhost=successor\nmode=exclusive\n"
    assert names_in(store) == [marker.name]


def test_a_link_found_on_the_path_goes_back_as_the_link(
    tmp_path: Path, store: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed aside (no exchange), a symlink put on the path after the marker was judged
    is linked back as itself: never a second name of its target."""
    without_exchange(monkeypatch)
    target = tmp_path / "target"
    target.write_bytes(b"someone's file\n")
    with judged_then_replaced(marker) as judged:
        marker.symlink_to(target)
        assert not _swap_out(marker, judged)
    assert marker.is_symlink() and os.readlink(marker) == str(target)
    assert os.lstat(target).st_nlink == 1 and target.read_bytes() == b"someone's file\n"
    assert names_in(store) == [marker.name]
