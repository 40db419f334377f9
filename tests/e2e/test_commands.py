"""The remaining commands as users run them: serve, demo, simulate (and its fleet),
password sources."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import USER, Cli

pytestmark = pytest.mark.slow


def pinned(cli: Cli) -> list[str]:
    settings = json.loads((cli.project / ".code-indexer" / "auth.json").read_text())
    algorithms: list[str] = settings["allowed_algorithms"]
    return algorithms


def test_serve_then_login_with_the_password_from_the_environment(cli: Cli) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "serve", "--port", "0", "--token-lifetime", "60",
         "--user", "bob:builder-pw", "--alg", "HS256"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cli.env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("serving on http://127.0.0.1:")
        url = line.removeprefix("serving on ")
        password = {"CIDX_PASSWORD": "builder-pw"}
        refused = cli.run("login", "--server", url, "--username", "bob", "--allow-alg",
                          "RS256", stdin="", env_extra=password)
        assert refused.returncode == 2 and "given with --allow-alg" in refused.stderr
        assert cli.run("login", "--server", url, "--username", "bob", "--allow-alg", "none",
                       env_extra=password).returncode == 2
        done = cli.run("login", "--server", url, "--username", "bob", env_extra=password)
        assert done.returncode == 0, done.stderr  # pinned to the first token's algorithm
        assert "builder-pw" not in done.stdout + done.stderr
        assert pinned(cli) == ["HS256"]
        assert cli.run("token").returncode == 0
        explicit = cli.run("login", "--server", url, "--username", "bob", "--allow-alg",
                           "hs256", "--allow-alg", "HS512", env_extra=password)
        assert explicit.returncode == 0 and pinned(cli) == ["HS256", "HS512"]  # replaced
        again = cli.run("login", "--server", url, "--username", "bob", env_extra=password)
        assert again.returncode == 0 and pinned(cli) == ["HS256"]  # pinned anew
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout:
            server.stdout.close()


def test_serve_passes_tls_and_the_admin_token_file_through(cli: Cli, tmp_path: Path) -> None:
    tls, token_file = tmp_path / "tls", tmp_path / "admin-token"
    server = subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "serve", "--port", "0", "--tls", str(tls),
         "--admin-token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cli.env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("serving on https://127.0.0.1:"), line
        assert stat.S_IMODE(tls.stat().st_mode) == 0o700
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        verify = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        with httpx.Client(base_url=line.removeprefix("serving on "), verify=verify,
                          trust_env=False) as http:
            assert http.get("/_admin/stats").status_code == 401
            token = {"X-Admin-Token": token_file.read_text().strip()}
            assert http.get("/_admin/stats", headers=token).status_code == 200
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout:
            server.stdout.close()
    assert not token_file.exists()  # the server removes the file it made


def test_demo_passes_end_to_end(cli: Cli) -> None:
    done = cli.run("demo", "--seconds", "8", "--processes", "2", timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo passed" in done.stdout
    assert "failed: 0" in done.stdout and "0 replay detections" in done.stdout
    # Without a terminal: the 5 s mark in words, and the faults explained (issue 22, item 9)
    assert "   5 s: " in done.stdout and "['" not in done.stdout
    assert "faults injected, and what the client did:" in done.stdout
    assert "refresh tokens were revoked" in done.stdout and "503" in done.stdout


def test_simulate_reports_zero_failures(cli: Cli) -> None:
    done = cli.run("simulate", "--hours", "2")
    assert done.returncode == 0
    assert "failed operations: 0, unusable tokens: 0, replays: 0" in done.stdout


def test_simulate_fleet_reports_its_figures_and_goals(cli: Cli) -> None:
    """Without faults every goal is met; the default day on this small fleet fails over
    twice at night (00:26 and 01:00), and the logins while no primary answered miss the
    auth-call goal: the verdict names it with its figure and the command exits 1."""
    small = ["simulate", "--fleet", "--hosts", "2", "--processes-per-host", "5", "--hours",
             "2", "--seed", "3"]
    judged = "(the auth-call goal judged per renewal due, not per lifetime)"
    done = cli.run(*small, "--no-faults")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fleet: 10 processes (5 on each of 2 hosts), 2 h simulated in ")
    assert lines[0].endswith(", seed 3")
    assert "failed: 0 (goal 0)" in done.stdout and "replays: 0 (goal 0)" in done.stdout
    assert "auth calls per renewal due (goal: at most 1.05)" in done.stdout
    assert "\nfault plan, no faults: " in done.stdout and "\nfaults injected: none\n" in done.stdout
    assert lines[-1] == f"every goal met {judged}"
    assert done.stderr == ""

    missed = cli.run(*small)
    assert missed.returncode == 1, missed.stdout + missed.stderr
    lines = missed.stdout.splitlines()
    assert "\nfault plan, the default day: " in missed.stdout
    assert "\n  failover_in_flight         1  " in missed.stdout
    assert "\n  failover_unreplicated      1  " in missed.stdout
    assert "\n  failover_at_random         0  " in missed.stdout
    assert "\n  00:26:18  failover_in_flight " in missed.stdout
    assert "replays: 0 (goal 0)" in missed.stdout
    assert lines[-1] == f"goal missed: 1.208 auth calls per renewal due > 1.05 {judged}"
    assert missed.stderr == ""  # each process's warnings are counted, not printed, without -v


def test_simulate_fleet_options_need_the_fleet(cli: Cli) -> None:
    done = cli.run("simulate", "--hosts", "3")
    assert done.returncode == 2 and "need --fleet" in done.stderr
    assert "need --fleet" in cli.run("simulate", "--stress").stderr
    both = cli.run("simulate", "--fleet", "--stress", "--no-faults")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_interactive_prompt_is_refused_without_a_terminal(cli: Cli) -> None:
    done = cli.run("login", "--server", "http://127.0.0.1:9", "--username", "bob")
    assert done.returncode == 2 and "CIDX_PASSWORD" in done.stderr
    empty = cli.run("login", "--server", "http://127.0.0.1:9", "--username", "bob",
                    "--password-stdin", stdin="\n")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_status_and_logout_before_any_login_are_not_errors(cli: Cli) -> None:
    status = cli.run("status", "--json")
    assert status.returncode == 3 and '"logged_in": false' in status.stdout  # the answer
    logout = cli.run("logout")
    assert logout.returncode == 0 and "Not logged in" in logout.stdout


def test_a_malformed_server_url_is_a_usage_error(cli: Cli) -> None:
    done = cli.run("login", "--server", "http://[::1", "--username", "bob",
                   env_extra={"CIDX_PASSWORD": "pw"})
    assert done.returncode == 2 and "cannot be read as a URL" in done.stderr


def test_broken_pipe_is_quiet(cli: Cli) -> None:
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    writer = subprocess.run(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), "--help"],
        stdout=reader.stdin, stderr=subprocess.PIPE, text=True, env=cli.env, check=False,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(10)
    assert "Traceback" not in writer.stderr and "unexpected" not in writer.stderr


def test_token_refresh_after_a_401_and_no_process_prints_the_refused_token(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    first = cli.run("token").stdout.strip()
    server.revoke(USER)  # the server now answers 401 to it, though it has not expired
    renewed = cli.run("token", "--refresh")
    assert renewed.returncode == 0, renewed.stderr
    second = renewed.stdout.strip()
    assert second and second != first
    assert cli.run("token").stdout.strip() == second  # the fast path, a fresh process
    status = json.loads(cli.run("status", "--json").stdout)
    assert status["token_state"] == "fresh"


def test_a_refused_token_is_not_printed_by_the_fast_path_while_renewal_fails(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    first = cli.run("token").stdout.strip()
    server.inject("error", count=20, status=503)  # the server is down meanwhile
    refreshed = cli.run("token", "--refresh")
    assert refreshed.returncode == 4 and first not in refreshed.stdout
    again = cli.run("token")  # a fresh process: the refused token is marked in the store
    assert again.returncode == 4 and first not in again.stdout, again.stderr
    server.clear_faults()
    assert cli.login(server.url).returncode == 0  # a login resets the breaker
    assert cli.run("token").stdout.strip() not in ("", first)
