"""The reference server on a machine other users share (issue 20, item 9).

`--tls DIR` uses only a directory of the user's that nobody else can write, creates each
file `O_EXCL | O_NOFOLLOW` at 0600 and reuses only the material it made: a planted link
or key stops it before it listens, with one line and exit 2, and nothing is changed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from refserver.config import ServerConfig
from refserver.private import Refused
from refserver.runner import RunningServer
from refserver.tls import CA_FILE, CERT_FILE, KEY_FILE, MANIFEST_FILE, ensure_tls_material

pytestmark = pytest.mark.slow

PASSWORD = "secret"
CONFIG = ServerConfig(users={"alice": PASSWORD})
OTHER_UID = 2002
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MATERIAL = (CA_FILE, CERT_FILE, KEY_FILE, MANIFEST_FILE)
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="chown to another uid needs root")


def start_server(*flags: str) -> subprocess.CompletedProcess[str]:
    """`python -m refserver` with `flags`, which must refuse to start: with stdin closed
    and `--stop-on-stdin-eof`, a server that did start exits 0 at once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run(
        [sys.executable, "-m", "refserver", "--port", "0", "--stop-on-stdin-eof", *flags],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
        check=False)


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "serving on" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith("refserver: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def listing(directory: Path) -> dict[str, tuple[int, bytes | str]]:
    """Each entry's mode and content (a link's target), to show nothing changed."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for entry in sorted(directory.iterdir()):
        status = entry.lstat()
        found[entry.name] = (status.st_mode, os.readlink(entry) if entry.is_symlink()
                             else entry.read_bytes())
    return found


# The TLS directory -----------------------------------------------------------------------


def test_material_is_made_private_and_reused_only_as_made(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    old_umask = os.umask(0)  # the modes must not depend on it
    try:
        first = ensure_tls_material(directory)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in MATERIAL:
        status = (directory / name).lstat()
        assert stat.S_ISREG(status.st_mode)
        assert stat.S_IMODE(status.st_mode) == 0o600, name
    with RunningServer(CONFIG, directory) as server:  # a new process reuses it
        assert server.ca_file == first.ca_file
        with server.client() as http:
            assert http.get("/health").status_code == 200
    assert ensure_tls_material(directory) == first
    assert sorted(p.name for p in directory.iterdir()) == sorted(MATERIAL)


@needs_root
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "tls")
    os.chown(directory, OTHER_UID, OTHER_UID)
    assert_refused(start_server("--tls", str(directory)), str(directory), "another user")
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    directory = private_dir(tmp_path / "tls")
    directory.chmod(mode)  # 0o1777: sticky like /tmp, still anyone can plant a key there
    line = assert_refused(start_server("--tls", str(directory)), str(directory),
                          "written by group or others")
    assert f"{mode:04o}" in line
    assert list(directory.iterdir()) == []
    assert stat.S_IMODE(directory.stat().st_mode) == mode


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = private_dir(tmp_path / "real")
    (tmp_path / "tls").symlink_to(real)
    assert_refused(start_server("--tls", str(tmp_path / "tls")), "symbolic link")
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("victim_exists", [True, False])
def test_a_link_planted_at_the_key_is_neither_followed_nor_replaced(
        tmp_path: Path, victim_exists: bool) -> None:
    directory = private_dir(tmp_path / "tls")
    victim = tmp_path / "victim.txt"
    if victim_exists:
        victim.write_text("the victim's own file\n")
        victim.chmod(0o644)
    (directory / KEY_FILE).symlink_to(victim)
    before = listing(directory)
    assert_refused(start_server("--tls", str(directory)),
                   str(directory / KEY_FILE), "symbolic link", "use a new --tls directory")
    assert listing(directory) == before  # the link stays, nothing was made beside it
    if victim_exists:
        assert victim.read_text() == "the victim's own file\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    else:
        assert not victim.exists()  # a dangling link made nothing at its target


def test_a_planted_key_is_not_reused(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "tls")
    made = ensure_tls_material(tmp_path / "elsewhere")  # a valid set, but not made here
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        (directory / name).write_bytes((made.ca_file.parent / name).read_bytes())
        (directory / name).chmod(0o600)
    before = listing(directory)
    assert_refused(start_server("--tls", str(directory)), "was not made by the reference server")
    with pytest.raises(Refused, match="was not made by the reference server"):
        RunningServer(CONFIG, directory)
    assert listing(directory) == before


def test_a_key_replaced_after_the_server_made_it_is_not_reused(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    ensure_tls_material(directory)
    other = ensure_tls_material(tmp_path / "other")
    (directory / KEY_FILE).write_bytes(other.key_file.read_bytes())  # same owner, same mode
    before = listing(directory)
    assert_refused(start_server("--tls", str(directory)), str(directory / KEY_FILE),
                   "is not what the reference server made")
    assert listing(directory) == before


@pytest.mark.parametrize(("change", "words"), [
    (lambda key: key.chmod(0o644), "has mode 0644"),
    (lambda key: os.link(key, key.parent.parent / "extra-link"), "other hard links"),
])
def test_material_that_is_no_longer_private_is_not_reused(
        tmp_path: Path, change: object, words: str) -> None:
    directory = tmp_path / "tls"
    ensure_tls_material(directory)
    change(directory / KEY_FILE)  # type: ignore[operator]
    assert_refused(start_server("--tls", str(directory)), str(directory / KEY_FILE), words)


@needs_root
def test_a_key_owned_by_another_user_is_not_reused(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    ensure_tls_material(directory)
    os.chown(directory / KEY_FILE, OTHER_UID, OTHER_UID)
    assert_refused(start_server("--tls", str(directory)), str(directory / KEY_FILE),
                   "another user (uid 2002)")
    assert (directory / KEY_FILE).stat().st_uid == OTHER_UID


def test_a_partial_set_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    ensure_tls_material(directory)
    (directory / CERT_FILE).unlink()
    assert_refused(start_server("--tls", str(directory)), str(directory / CERT_FILE),
                   "is missing")
