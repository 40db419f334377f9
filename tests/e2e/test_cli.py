"""End to end: the acceptance criteria as a user meets them on the command line."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import stat
import threading

import pytest

from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli, expire_stored_token

pytestmark = pytest.mark.slow


def user_stats(server: RunningServer) -> dict[str, int]:
    stats: dict[str, int] = server.stats()["users"].get(USER, {})
    return stats


def test_login_then_another_process_reuses_the_stored_token(
    cli: Cli, server: RunningServer
) -> None:
    done = cli.login(server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Logged in as {USER} at {server.url} (token valid until ")
    before = user_stats(server)
    token = cli.run("token")
    assert token.returncode == 0 and token.stdout.count(".") == 2
    assert token.stdout.endswith("\n") and token.stderr == ""
    after = user_stats(server)
    assert (before["logins"], before["refreshes"]) == (1, 0)
    assert (after["logins"], after["refreshes"]) == (1, 0)
    queried = cli.run("query", "parse tokens", "--repo", "backend", "--json")
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["total_results"] >= 1


def test_token_file_is_private_and_encrypted(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    token = cli.run("token").stdout.strip()
    data = cli.token_file.read_bytes()
    assert stat.S_IMODE(cli.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.token_file.parent.stat().st_mode) == 0o700
    assert token.encode() not in data and b"eyJ" not in data and b"refresh" not in data
    creds = (cli.project / ".code-indexer" / ".creds").read_bytes()
    assert PASSWORD.encode() not in creds


def test_expiry_between_commands_costs_one_refresh(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    first = cli.run("token").stdout
    assert first == cli.run("token").stdout  # a fresh token is reused
    expire_stored_token(cli)
    second = cli.run("token")
    assert second.returncode == 0 and second.stdout != first
    assert second.stderr == ""  # a transparent refresh says nothing
    stats = user_stats(server)
    assert (stats["logins"], stats["refreshes"]) == (1, 1)


def test_revoked_refresh_tokens_cost_one_relogin(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    server.revoke(USER)
    expire_stored_token(cli)
    done = cli.run("query", "x", "--repo", "backend")
    assert done.returncode == 0, done.stderr
    stats = user_stats(server)
    assert (stats["logins"], stats["failed_refreshes"]) == (2, 1)
    again = cli.run("query", "y", "--repo", "backend", "--json")
    assert again.returncode == 0 and user_stats(server)["logins"] == 2
    status = json.loads(cli.run("status", "--json").stdout)
    assert status["counters"]["relogins"] == 1
    assert status["token_state"] == "fresh"


def test_fifty_processes_with_an_expired_token_refresh_once(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    expire_stored_token(cli)
    processes = [cli.start("query", "concurrency", "--repo", "backend", "--json")
                 for _ in range(50)]
    codes = [p.wait(timeout=180) for p in processes]
    errors = [p.stderr.read() for p in processes if p.stderr]  # type: ignore[union-attr]
    for p in processes:
        assert p.stdout is not None
        p.stdout.close()
        p.stderr.close()  # type: ignore[union-attr]
    assert codes.count(0) == 50, [e for e in errors if e][:3]
    stats = user_stats(server)
    assert stats["refreshes"] == 1 and stats["logins"] == 1
    assert stats["replays"] == 0


def test_wrong_password_exits_3_after_one_attempt(cli: Cli, server: RunningServer) -> None:
    done = cli.run("login", "--server", server.url, "--username", USER, "--password-stdin",
                   stdin="wrong-password\n")
    assert done.returncode == 3
    assert "refused" in done.stderr and "Traceback" not in done.stderr
    assert user_stats(server).get("failed_logins") == 1
    assert not (cli.project / ".code-indexer" / ".creds").exists()


class CountingRefuser:
    """A port that accepts connections and closes them at once: a broken server."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def test_server_down_exits_4_and_then_fails_fast(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    server.stop()
    # A broken server on the same port: accepts connections and drops them, counting.
    refuser = CountingRefuser(server.port)
    expire_stored_token(cli)
    first = cli.run("token")
    assert first.returncode == 4 and "Traceback" not in first.stderr
    assert server.url in first.stderr
    second = cli.run("token")
    assert second.returncode == 4
    assert refuser.connections == 5  # 3 attempts, then 2 more: the 5th opens the circuit
    third = cli.run("token")
    assert third.returncode == 4 and "next attempt after" in third.stderr
    assert refuser.connections == 5  # failed fast: no connection at all
    status = json.loads(cli.run("status", "--json").stdout)
    assert status["breaker"] == "open" and status["next_attempt"]
    refuser.sock.close()


def test_corrupted_token_file_is_survived(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    cli.token_file.write_bytes(b"garbage that is not a fernet token")
    done = cli.run("query", "still works", "--repo", "backend")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert list(cli.token_file.parent.glob(".token.corrupt-*"))


def stored_secrets(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every secret the project's token file holds right now, decrypted as the CLI would."""
    from cidx_auth.app.project import open_project

    monkeypatch.setenv("CIDX_CONFIG_DIR", cli.env["CIDX_CONFIG_DIR"])
    project = open_project(cli.project, offline=True)  # offline: after a logout too
    try:
        session = project.container.token_store().load()
    finally:
        project.close()
    if session is None:
        return set()
    found = {session.token.raw, *session.token.raw.split(".")[1:]}
    return found | ({session.refresh_token} if session.refresh_token else set())


def test_no_secret_in_any_output_at_vv(
    cli: Cli, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = [cli.run("-vv", "login", "--server", server.url, "--username", USER,
                       "--password-stdin", stdin=PASSWORD + "\n")]
    secrets = stored_secrets(cli, monkeypatch)
    server.revoke(USER)
    steps = (["status"], ["status", "--json"], ["query", "q", "--repo", "backend"],
             ["request", "GET", "/api/repos"], ["request", "GET", "/api/nowhere"],
             ["logout"], ["query", "q", "--repo", "backend"], ["query", "again", "--repo",
             "backend"], ["logout", "--forget"], ["token"])
    for args in steps:
        outputs.append(cli.run("-vv", *args))
        secrets |= stored_secrets(cli, monkeypatch)
        expire_stored_token(cli, missing_ok=True)  # the next command renews: more to watch
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert len(secrets) >= 6  # several tokens and refresh tokens went by
    assert PASSWORD not in text
    for secret in secrets:
        assert secret not in text
    assert outputs[-1].returncode == 3 and "cidx-auth login" in outputs[-1].stderr


def test_a_request_the_server_refuses_exits_6_with_the_servers_detail(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    missing = cli.run("query", "x", "--repo", "no-such-repo")
    assert missing.returncode == 6, missing.stderr
    assert "404" in missing.stderr and "unexpected error" not in missing.stderr
    bad = cli.run("request", "POST", "/api/query", "--data", "{not json")
    assert bad.returncode == 2 and "--data" in bad.stderr
    ok = cli.run("request", "GET", "/api/repos")
    assert ok.returncode == 0 and json.loads(ok.stdout)["total"] >= 1


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli.run("login").returncode == 2
    no_password = cli.run("login", "--server", "http://127.0.0.1:9", "--username", USER)
    assert no_password.returncode == 2 and "--password-stdin" in no_password.stderr
    assert cli.run("token").returncode == 3  # not logged in: told to log in
    assert "cidx-auth login" in cli.run("status").stdout  # answered, exit 0


def test_concurrent_cli_and_refreshes_never_replay(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for round_ in range(1, 4):
            expire_stored_token(cli)  # four commands at once find it expired
            runs = list(pool.map(lambda _: cli.run("token"), range(4)))
            assert [run.returncode for run in runs] == [0] * 4, runs[0].stderr
            assert len({run.stdout for run in runs}) == 1  # one renewal, shared
            stats = user_stats(server)
            assert (stats["logins"], stats["refreshes"], stats["replays"]) == (1, round_, 0)


def test_a_refused_stored_password_is_not_sent_again(cli: Cli, server: RunningServer) -> None:
    assert cli.login(server.url).returncode == 0
    server.revoke(USER)
    server.stop()
    expire_stored_token(cli)  # expired while the server was down and its password changed
    server.config = ServerConfig(users={USER: "a-new-password"})
    server.start()
    first = cli.run("token")
    assert first.returncode == 3 and "cidx-auth login" in first.stderr
    for _ in range(3):
        again = cli.run("token")
        assert again.returncode == 3 and "cidx-auth login" in again.stderr
    stats = user_stats(server)
    assert stats.get("failed_logins", 0) == 1  # far from the 5 that lock the account


def test_login_to_a_corrected_url_is_not_blocked_by_the_old_circuit(
    cli: Cli, server: RunningServer
) -> None:
    dead = CountingRefuser()
    for _ in range(2):  # 3 + 2 failed attempts: enough to open a circuit kept per project
        assert cli.login(dead.url).returncode == 4
    done = cli.login(server.url)
    assert done.returncode == 0, done.stderr
    dead.sock.close()
