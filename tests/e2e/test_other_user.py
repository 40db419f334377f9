"""The copy of Python made for another user (``other_user.py``): nobody but root can
change what that user will run, whatever the umask and whoever owned the originals."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.other_user import Unsupported, distributions, place

needs_root = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                                reason="needs root, to own files as another user")


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)  # the modes must not depend on it
    try:
        yield
    finally:
        os.umask(old)


def original(directory: Path, name: str, bits: int, uid: int | None = None) -> Path:
    path = directory / name
    path.write_bytes(name.encode())
    if uid is not None:
        os.chown(path, uid, uid)
    os.chmod(path, bits)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    return path


@needs_root
@pytest.mark.usefixtures("umask_000")
def test_only_files_root_alone_can_write_are_linked_the_rest_copied_read_only(
    tmp_path: Path,
) -> None:
    made = tmp_path / "copy"
    made.mkdir(mode=0o700)
    expected = {  # name: (original's mode and owner, linked?, the copy's mode)
        "module.py": (0o644, 0, True, 0o644),
        "python3": (0o755, 0, True, 0o755),
        "group-writable.py": (0o664, 0, False, 0o644),
        "everyones.py": (0o666, 0, False, 0o644),
        "set-user-id": (0o4755, 0, False, 0o755),
        "theirs.py": (0o644, 2003, False, 0o644),  # another user's: they could change it
    }
    for name, (bits, uid, linked, copied_bits) in expected.items():
        source = original(tmp_path, name, bits, uid)
        target = made / "lib" / "python3.X" / name
        place(source, target)
        assert os.path.samefile(source, target) == linked, name
        assert stat.S_IMODE(os.stat(target).st_mode) == (bits if linked else copied_bits)
        assert target.read_bytes() == name.encode()
        assert os.stat(target).st_mtime_ns == 2_000_000_000  # byte code stays valid
    for directory in (made / "lib", made / "lib" / "python3.X"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755, directory
        assert os.stat(directory).st_uid == 0


def test_a_file_already_in_the_copy_is_never_replaced(tmp_path: Path) -> None:
    source = original(tmp_path, "module.py", 0o664)  # copied, not linked
    target = tmp_path / "copy" / "module.py"
    target.parent.mkdir()
    target.write_bytes(b"planted")
    with pytest.raises(FileExistsError):
        place(source, target)
    assert target.read_bytes() == b"planted"


def test_the_requirements_come_with_their_extras_and_a_missing_one_is_named() -> None:
    names = {distribution.metadata["Name"].lower()
             for distribution in distributions("cidx-auth", ["redis"])}
    assert {"cidx-auth", "httpx", "h2", "cryptography", "redis"} <= names  # httpx[http2]
    assert not names & {"pytest", "mypy", "starlette"}  # dev and server extras left out
    with pytest.raises(Unsupported, match="no-such-distribution is not installed"):
        distributions("no-such-distribution", [])
