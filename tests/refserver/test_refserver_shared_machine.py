"""The reference server on a machine other users share (issue 20, item 9).

`--tls DIR` uses only a directory of the user's that nobody else can write, creates each
file `O_EXCL | O_NOFOLLOW` at 0600 and reuses only the material it made: a planted link
or key stops it before it listens, with one line and exit 2, and nothing is changed.
`/_admin` wants the token drawn at start (header `X-Admin-Token`): without it, or with
another, nothing is read and nothing changes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from refserver.admin_routes import ADMIN_TOKEN_HEADER
from refserver.app import admin_token
from refserver.config import ServerConfig
from refserver.private import Refused
from refserver.runner import RunningServer
from refserver.testing import asgi_client, fake_app
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


# The admin token file --------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["file", "link"])
def test_an_existing_admin_token_file_is_never_overwritten(tmp_path: Path, planted: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's own file\n")
    victim.chmod(0o644)
    path = tmp_path / "admin-token"
    if planted == "link":
        path.symlink_to(victim)
    else:
        path.write_text("a token someone else knows\n")
    assert_refused(start_server("--admin-token-file", str(path)), str(path), "already exists")
    assert victim.read_text() == "the victim's own file\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    if planted == "file":
        assert path.read_text() == "a token someone else knows\n"


def test_an_admin_token_file_where_others_can_swap_it_is_refused(tmp_path: Path) -> None:
    holder = tmp_path / "shared"
    holder.mkdir()
    holder.chmod(0o777)  # no sticky bit: anyone could rename the file and put theirs
    assert_refused(start_server("--admin-token-file", str(holder / "admin-token")),
                   str(holder), "can be written by others")
    assert list(holder.iterdir()) == []


def test_without_a_file_the_token_goes_to_stderr_and_works() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "refserver", "--port", "0", "--stop-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=PROJECT_ROOT)
    try:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdin is not None
        shown = child.stderr.readline()
        assert f"send it as {ADMIN_TOKEN_HEADER}" in shown
        token = shown.rsplit(" ", 1)[1].strip()
        url = child.stdout.readline().split()[-1]
        with httpx.Client(base_url=url, trust_env=False) as http:
            assert http.get("/_admin/stats").status_code == 401
            stats = http.get("/_admin/stats", headers={ADMIN_TOKEN_HEADER: token})
            assert stats.status_code == 200
        child.stdin.close()
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


# /_admin over the wire -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(CONFIG) as running:
        yield running


def login(http: httpx.Client) -> dict[str, str]:
    response = http.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body: dict[str, str] = response.json()
    return body


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({ADMIN_TOKEN_HEADER: "not-the-token"}, 403),
    ({ADMIN_TOKEN_HEADER: ""}, 403),
    ({"Authorization": "Bearer not-the-token"}, 401),
])
def test_admin_without_the_token_changes_nothing(
        server: RunningServer, headers: dict[str, str], status: int) -> None:
    server.reset()
    # A connection per request: on a loaded machine a pause past the server's 5 s
    # keep-alive could race a reused connection against its close (not what is tested).
    fresh = httpx.Limits(max_keepalive_connections=0)
    with server.client(headers=headers, limits=fresh) as http:
        session = login(http)
        query = http.post("/api/query", json={"query_text": "the secret plan", "limit": 1},
                          headers={"Authorization": f"Bearer {session['access_token']}"})
        assert query.status_code == 200
        revoked = http.post("/_admin/revoke", json={"username": "alice"})
        assert revoked.status_code == status
        assert "revoked_families" not in revoked.text
        last = http.get("/_admin/last-query")
        assert last.status_code == status
        assert "secret plan" not in last.text
        assert http.post("/_admin/reset").status_code == status
        assert http.post("/_admin/faults", json={"kind": "error"}).status_code == status
        assert http.post("/_admin/clock", json={"offset": 3600}).status_code == status
        # The family was not revoked: its refresh token still works.
        refreshed = http.post("/api/auth/refresh",
                              json={"refresh_token": session["refresh_token"]})
        assert refreshed.status_code == 200
    stats = server.stats()  # nothing was reset
    assert stats["totals"]["logins"] == 1
    assert stats["totals"]["queries"] == 1
    assert server.last_query()["query_text"] == "the secret plan"


def test_admin_with_the_token_works_and_a_restart_draws_a_new_one(tmp_path: Path) -> None:
    with RunningServer(CONFIG) as server:
        first = server.admin_token
        assert len(first) >= 32
        with server.client() as http:
            login(http)
        assert server.revoke("alice") == 1
        server.stop()
        server.start()
        assert server.admin_token not in ("", first)
        with server.client(headers={ADMIN_TOKEN_HEADER: first}) as http:
            assert http.get("/_admin/stats").status_code == 403  # the old one is dead
        assert server.stats()["totals"]["logins"] == 0


# /_admin in-process: every route is guarded ----------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/_admin/stats"), ("GET", "/_admin/faults"), ("POST", "/_admin/faults"),
    ("DELETE", "/_admin/faults"), ("POST", "/_admin/revoke"), ("POST", "/_admin/reset"),
    ("GET", "/_admin/clock"), ("POST", "/_admin/clock"), ("POST", "/_admin/token-lifetime"),
    ("POST", "/_admin/wait"), ("GET", "/_admin/last-query"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_every_admin_route_wants_the_token(method: str, path: str) -> None:
    app = fake_app(CONFIG)
    async with asgi_client(app, admin=False) as http:
        missing = await http.request(method, path, json={})
        wrong = await http.request(method, path, json={},
                                   headers={ADMIN_TOKEN_HEADER: admin_token(app) + "x"})
    assert missing.status_code == 401
    assert missing.json() == {"detail": f"Admin endpoints need the {ADMIN_TOKEN_HEADER} header"}
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "Wrong admin token"}


async def test_each_app_draws_its_own_token() -> None:
    one, two = fake_app(CONFIG), fake_app(CONFIG)
    assert admin_token(one) != admin_token(two)
    async with asgi_client(one, admin=False) as http:
        response = await http.get("/_admin/stats",
                                  headers={ADMIN_TOKEN_HEADER: admin_token(two)})
    assert response.status_code == 403
