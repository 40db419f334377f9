"""Ctrl-C and SIGTERM: exit 130 / 143 with one line on stderr, wherever they land.

Each signal is sent on a cue, never after a guessed delay: the reference server holds
the command's request (the "hold" fault) and reports when it has it, or the fast path
signals its own process from inside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from refserver.harness import RunningServer
from tests.e2e.conftest import Cli

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="POSIX signals")]

STOPS = [(signal.SIGINT, 130, "cidx-auth: interrupted"),
         (signal.SIGTERM, 143, "cidx-auth: terminated")]


def _default_signals() -> None:
    # A parent started in the background (`cmd &`) passes SIGINT on ignored, and Python
    # then keeps ignoring it: the child must start with the default, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env,
        preexec_fn=_default_signals,
    )


def stop_and_collect(child: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    return child.returncode, out, err


@pytest.mark.parametrize(("signum", "code", "line"), STOPS)
def test_a_signal_during_a_request_exits_with_one_line(
    cli: Cli, server: RunningServer, signum: int, code: int, line: str
) -> None:
    assert cli.login(server.url).returncode == 0
    server.hold("/api/repos", seconds=60)
    child = start(cli, "request", "GET", "/api/repos")
    try:
        server.wait_held()
        returncode, out, err = stop_and_collect(child, signum)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert (returncode, out) == (code, "")
    assert err.splitlines() == [line]
    after = cli.run("request", "GET", "/api/repos")  # nothing was left locked or damaged
    assert after.returncode == 0, after.stderr


@pytest.mark.parametrize(("signum", "code", "line"), STOPS)
def test_a_signal_during_the_token_fast_path_exits_with_one_line(
    cli: Cli, server: RunningServer, signum: int, code: int, line: str
) -> None:
    assert cli.login(server.url).returncode == 0
    assert cli.run("token").returncode == 0
    # The fast path signals its own process while it reads the stored token.
    script = textwrap.dedent(f"""
        import os, sys, time
        import cidx_auth.app.fastpath as fastpath
        from cidx_auth.app.entry import main

        def reading(root):
            os.kill(os.getpid(), {int(signum)})
            time.sleep(30)  # the handler runs before this returns
            raise AssertionError("the signal never arrived")

        fastpath.fresh_stored_token = reading
        sys.argv = ["cidx-auth", "--project", {str(cli.project)!r}, "token"]
        main()
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=cli.env, timeout=60, check=False, preexec_fn=_default_signals)
    assert (child.returncode, child.stdout) == (code, "")
    assert child.stderr.splitlines() == [line]


def test_help_shows_the_exit_code_table(cli: Cli) -> None:
    shown = cli.run("--help")
    assert shown.returncode == 0
    table = shown.stdout.split("Exit codes:", 1)[1]
    codes = [row.split()[0] for row in table.splitlines() if row.strip()[:1].isdigit()]
    assert codes == ["0", "1", "2", "3", "4", "5", "6", "130/143"]
    assert "SIGTERM" in table and "another cidx process" in table
