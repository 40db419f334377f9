"""The server as a real child process: HTTP, HTTPS with HTTP/2, faults, restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from refserver.config import ServerConfig
from refserver.runner import RunningServer

pytestmark = pytest.mark.slow

CONFIG = ServerConfig(users={"alice": "secret"})


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(CONFIG) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_slate(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_plain_http_roundtrip(server: RunningServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.ca_file is None
    with server.client() as http:
        session = http.post("/auth/login", json={"username": "alice",
                                                 "password": "secret"}).json()
        rotated = http.post("/api/auth/refresh",
                            json={"refresh_token": session["refresh_token"]})
        assert rotated.status_code == 200
        repos = http.get("/api/repos",
                         headers={"Authorization": f"Bearer {rotated.json()['access_token']}"})
        assert repos.json()["total"] == 3
    stats = server.stats()
    assert stats["users"]["alice"]["logins"] == 1
    assert stats["users"]["alice"]["refreshes"] == 1
    assert stats["requests"] == 1


def test_admin_helpers(server: RunningServer) -> None:
    with server.client() as http:
        session = http.post("/auth/login", json={"username": "alice",
                                                 "password": "secret"}).json()
        assert server.revoke("alice") >= 1  # earlier tests in this module left families too
        refused = http.post("/api/auth/refresh",
                            json={"refresh_token": session["refresh_token"]})
        assert refused.json() == {"detail": "Refresh token revoked due to admin_revoke"}
        server.set_clock_offset(3600)
        expired = http.get("/api/repos",
                           headers={"Authorization": f"Bearer {session['access_token']}"})
        assert expired.json() == {"detail": "Token has expired"}
        server.set_clock_offset(0)
        server.inject("error", 1, status=502)
        server.clear_faults()
        assert http.get("/health").status_code == 200


def test_drop_fault_closes_the_connection(server: RunningServer) -> None:
    server.inject("drop", 1)
    with server.client(timeout=5.0) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # not a ReadTimeout
            http.get("/health")
        assert http.get("/health").status_code == 200


def test_hang_fault_outlasts_a_short_timeout(server: RunningServer) -> None:
    server.inject("hang", 1, seconds=2)
    with server.client(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/health")
        assert http.get("/health").status_code == 200


def test_rate_limit_fault_over_the_wire(server: RunningServer) -> None:
    server.inject("rate_limit", 1, retry_after=4, paths=["/auth/login"])
    with server.client() as http:
        response = http.post("/auth/login", json={"username": "alice", "password": "secret"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"


def test_tls_with_http2_and_certificate_checks() -> None:
    with RunningServer(CONFIG, tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_file is not None and server.ca_file.exists()
        with server.client(http2=True) as http:
            response = http.get("/health")
        assert response.http_version == "HTTP/2"
        with httpx.Client(trust_env=False) as stranger, pytest.raises(httpx.ConnectError,
                                                                       match="CERTIFICATE"):
            stranger.get(f"{server.url}/health")
        server.inject("drop", 1)
        with server.client(http2=True) as http, pytest.raises(
                (httpx.RemoteProtocolError, httpx.ReadError)):
            http.get("/health")
        tls_dir = server.tls_dir
    assert tls_dir is not None and not tls_dir.exists()


def test_stop_start_and_kill_keep_the_port() -> None:
    server = RunningServer(CONFIG)
    with server:
        url, first_pid = server.url, server.pid
        server.stop()
        assert not server.running
        with httpx.Client(trust_env=False) as http, pytest.raises(httpx.ConnectError):
            http.get(f"{url}/health")
        server.start()
        assert server.url == url
        assert server.pid != first_pid
        server.kill()
        assert not server.running
        server.start()
        with server.client() as http:
            assert http.get("/health").status_code == 200
        last_pid = server.pid
    assert last_pid is not None and not alive(last_pid)


def test_cli_announces_its_port_and_exits_when_stdin_closes() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "refserver", "--port", "0", "--user", "bob:pw",
         "--stop-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:")
        url = line.split()[-1]
        with httpx.Client(trust_env=False) as http:
            login = http.post(f"{url}/auth/login", json={"username": "bob", "password": "pw"})
        assert login.status_code == 200
        child.stdin.close()
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
