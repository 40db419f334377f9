"""The files on disk: permissions, refused paths, atomic writes, setting damaged files aside."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from adapters.file_io import MAX_FILE_SIZE, stat_identity
from adapters.file_quarantine import quarantine
from adapters.file_token_store import FileTokenStore
from cidx_auth.domain.errors import CredentialsUnreadable, StorageError
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, known_sessions


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def corrupt_aside(store: FileTokenStore) -> list[str]:
    return sorted(p.name for p in store.path.parent.glob(".token.corrupt-*"))


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.tmp-*"))


@pytest.mark.posix
def test_files_are_created_private_even_under_a_permissive_umask(
    files: Files, config_dir: Path
) -> None:
    old = os.umask(0)
    try:
        files.provider.login(ALICE)
    finally:
        os.umask(old)
    directory = files.store.path.parent
    assert mode(directory) == 0o700
    assert mode(config_dir) == 0o700
    assert mode(config_dir / "user.secret") == 0o600
    for name in (".token", ".token.lock", ".creds", ".state", ".state.lock"):
        assert mode(directory / name) == 0o600, name


@pytest.mark.posix
def test_wrong_modes_are_corrected_with_a_warning_and_the_token_still_used(
    files: Files, project: Path, config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = files.provider.login(ALICE)
    directory = files.store.path.parent
    os.chmod(directory, 0o755)  # noqa: S103  (widened on purpose: it must be corrected)
    os.chmod(directory / ".token", 0o644)
    os.chmod(directory / ".creds", 0o640)
    reader = Files(project, config_dir)  # a new process: nothing cached
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        loaded = reader.store.load()
        assert reader.credentials.load() == ALICE
        reader.store.save(session)  # a write also checks the directory
    assert loaded is not None
    assert loaded.token.raw == session.token.raw
    assert mode(directory / ".token") == 0o600
    assert mode(directory / ".creds") == 0o600
    assert mode(directory) == 0o700
    assert ".token had mode 644" in caplog.text
    assert ".creds had mode 640" in caplog.text
    assert "had mode 755" in caplog.text


@pytest.mark.posix
def test_a_symlinked_token_is_refused_not_followed_and_moved_aside(
    files: Files, tmp_path: Path
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("do not touch")
    os.chmod(target, 0o644)
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.symlink_to(target)

    assert files.store.load() is None

    assert not os.path.lexists(files.store.path)
    aside = corrupt_aside(files.store)
    assert len(aside) == 1
    assert (files.store.path.parent / aside[0]).is_symlink()
    assert target.read_text() == "do not touch"
    assert mode(target) == 0o644


@pytest.mark.posix
def test_saving_over_a_symlink_replaces_the_link_never_its_target(
    files: Files, tmp_path: Path
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("do not touch")
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.symlink_to(target)
    with files.store.lock(5):
        files.store.save(known_sessions()[0])
    assert not files.store.path.is_symlink()
    assert target.read_text() == "do not touch"


@pytest.mark.posix
def test_a_symlinked_creds_file_is_refused(files: Files, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x" * 100)
    files.credentials.path.parent.mkdir(mode=0o700)
    files.credentials.path.symlink_to(target)
    with pytest.raises(CredentialsUnreadable, match="run `cidx-auth login` again"):
        files.credentials.load()
    assert target.read_bytes() == b"x" * 100


@pytest.mark.posix
def test_a_fifo_in_place_of_the_token_does_not_hang_the_reader(files: Files) -> None:
    files.store.path.parent.mkdir(mode=0o700)
    os.mkfifo(files.store.path)
    assert files.store.load() is None
    assert not os.path.lexists(files.store.path)
    assert len(corrupt_aside(files.store)) == 1


def test_an_oversize_token_file_is_refused_and_set_aside(files: Files) -> None:
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.write_bytes(b"A" * (MAX_FILE_SIZE + 1))
    assert files.store.load() is None
    assert not files.store.path.exists()
    assert len(corrupt_aside(files.store)) == 1


def test_only_the_three_newest_damaged_files_are_kept(files: Files) -> None:
    files.store.path.parent.mkdir(mode=0o700)
    for number in range(5):  # damaged files in cidx-auth's own format
        files.store.path.write_bytes(f"gAAAAAgarbage {number}".encode())
        assert files.store.load() is None
    aside = corrupt_aside(files.store)
    assert len(aside) == 3
    contents = {(files.store.path.parent / name).read_bytes() for name in aside}
    assert contents == {b"gAAAAAgarbage 2", b"gAAAAAgarbage 3", b"gAAAAAgarbage 4"}


def test_quarantine_leaves_a_file_that_changed_since_it_was_read(files: Files) -> None:
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.write_bytes(b"gAAAAAgarbage")
    seen = stat_identity(files.store.path)
    assert seen is not None
    with files.store.lock(5):
        files.store.save(known_sessions()[0])  # another writer replaced it meanwhile
        assert not quarantine(files.store.path, seen, time.time())
    loaded = files.store.load()
    assert loaded is not None
    assert loaded.token.raw == known_sessions()[0].token.raw


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    files: Files, project: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = known_sessions()
    with files.store.lock(5):
        files.store.save(first)

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match="No space left on device"), files.store.lock(5):
        files.store.save(second)
    monkeypatch.undo()

    assert temps(files.store.path.parent) == []
    reader = Files(project, config_dir)
    loaded = reader.store.load()
    assert loaded is not None
    assert loaded.token.raw == first.token.raw


def test_stale_temp_files_are_swept_and_a_locked_writer_sweeps_them_all(files: Files) -> None:
    directory = files.store.path.parent
    directory.mkdir(mode=0o700)
    old, young = directory / ".token.tmp-old", directory / ".token.tmp-young"
    for temp in (old, young):
        temp.write_bytes(b"left by a killed writer")
    two_minutes_ago = time.time() - 120
    os.utime(old, (two_minutes_ago, two_minutes_ago))

    files.store.save(known_sessions()[0])  # without the lock: a young one may be live
    assert temps(directory) == [".token.tmp-young"]

    with files.store.lock(5):  # with it, no other write can be in flight
        files.store.save(known_sessions()[1])
    assert temps(directory) == []


def test_the_lock_file_stays_in_place_and_keeps_its_inode(files: Files) -> None:
    with files.store.lock(5):
        pass
    first = os.stat(files.store.lock_path).st_ino
    with files.store.lock(5):
        pass
    assert os.stat(files.store.lock_path).st_ino == first


def test_logout_removes_the_token_and_the_credentials(files: Files) -> None:
    files.provider.login(ALICE)
    files.provider.logout()
    assert not files.store.path.exists()
    assert not files.credentials.path.exists()
    assert files.store.load() is None
    assert files.credentials.load() is None


# What only a race, a crash or a huge file shows (issue 25) -------------------------------


def test_a_save_is_durable_the_data_then_the_rename_then_the_directory_synced(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash right after ``save`` returns loses nothing: the new file's bytes are
    synced before the rename, and the directory entry after it (without that, a power
    cut can bring back the old token, whose refresh token was already presented)."""
    first, second = known_sessions()
    with files.store.lock(5):
        files.store.save(first)  # the per-user secret and the directories now exist
    directory = files.store.path.parent
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            steps.append("sync the directory" if os.path.samestat(status, directory.stat())
                         else "sync another directory")
        else:
            steps.append("sync the data")
        real_fsync(fd)

    def replace(source: str | Path, target: str | Path) -> None:
        real_replace(source, target)
        steps.append(f"rename to {Path(target).name}")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with files.store.lock(5):
        files.store.save(second)

    assert steps == ["sync the data", "rename to .token", "sync the directory"]


def test_an_oversize_file_is_refused_without_reading_it(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size on ``fstat`` decides first: a file of gigabytes (here sparse) is refused
    before a byte of it is read."""
    path = files.store.path
    path.parent.mkdir(mode=0o700)
    with path.open("wb") as sparse:
        sparse.truncate(2**32)
    inode = path.stat().st_ino
    reads_of_it: list[int] = []
    real_read = os.read

    def read(fd: int, size: int) -> bytes:
        if os.fstat(fd).st_ino == inode:
            reads_of_it.append(size)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", read)
    assert files.store.load() is None
    assert reads_of_it == []
    assert len(corrupt_aside(files.store)) == 1


def test_under_the_lock_the_file_answers_not_the_cache(files: Files) -> None:
    """The renewal decides under the lock whether to present the stored refresh token,
    so there the store reads the file even when it looks unchanged: here another writer
    rewrote it in place, keeping its inode, size and mtime, which fools the cache."""
    first, second = known_sessions()
    path = files.store.path
    with files.store.lock(5):
        files.store.save(second)
        second_bytes = path.read_bytes()
        files.store.save(first)
    loaded = files.store.load()
    assert loaded is not None and loaded.refresh_token == first.refresh_token
    status = path.stat()
    assert len(second_bytes) == status.st_size  # the same size, so the same identity
    with path.open("r+b") as in_place:
        in_place.write(second_bytes)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert stat_identity(path) == (status.st_dev, status.st_ino, status.st_mtime_ns,
                                   status.st_size)
    cached = files.store.load()  # outside the lock a young cache may answer: it is fooled
    assert cached is not None and cached.refresh_token == first.refresh_token

    with files.store.lock(5):
        under_lock = files.store.load()

    assert under_lock is not None and under_lock.refresh_token == second.refresh_token
