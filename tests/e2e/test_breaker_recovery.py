"""The breaker across real CLI processes: an outage opens it, and users get back in.

Time is not slept away: the open period "passes" by planting ``.state`` with an
``open_until`` that has just gone by (decisions.md, "Tests on this machine").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cidx_auth.domain.moments import iso_utc
from refserver.harness import RunningServer
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow

CLOSED = {"circuit": "closed", "failures": 0, "open_until": 0.0, "probe_until": None,
          "open_period": 30.0}


def state_file(cli: Cli) -> Path:
    return cli.project / ".code-indexer" / ".state"


def breaker(cli: Cli) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(state_file(cli).read_text())["breaker"]
    return found


def plant(cli: Cli, *, drop: tuple[str, ...] = (), **fields: Any) -> None:
    """Rewrite the persisted breaker as another process could have left it."""
    document = json.loads(state_file(cli).read_text())
    document["breaker"].update(fields)
    for name in drop:
        del document["breaker"][name]
    state_file(cli).write_text(json.dumps(document))


def clock_times(start: float, end: float) -> set[str | None]:
    """Every time a status run between ``start`` and ``end`` may have shown."""
    seconds = range(int(start), int(end) + 1)
    return {iso_utc(t) for t in seconds}


def repos(cli: Cli) -> subprocess.CompletedProcess[str]:
    return cli.run("request", "GET", "/api/repos")


def status(cli: Cli) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(cli.run("status", "--json").stdout)
    return report


def fired(server: RunningServer) -> int:
    return int(server.stats()["totals"]["faults_fired"])


def open_circuit(cli: Cli, server: RunningServer) -> None:
    """Five 500s over two commands (3 attempts, then 2): the fifth opens the circuit."""
    assert cli.login(server.url).returncode == 0
    server.inject("error", count=5, status=500, paths=["/api/repos"])
    first = repos(cli)
    assert first.returncode == 4 and "Traceback" not in first.stderr
    second = repos(cli)
    assert second.returncode == 4 and "next attempt after" in second.stderr
    assert fired(server) == 5  # every fault is spent: the server has recovered


def test_after_the_first_open_period_the_next_command_probes_and_succeeds(
    cli: Cli, server: RunningServer
) -> None:
    open_circuit(cli, server)
    opened = breaker(cli)
    assert opened["circuit"] == "open" and opened["failures"] == 5
    assert opened["open_period"] == 30
    assert 0 < opened["open_until"] - time.time() <= 30  # opened for 30 s, from just now
    shown = status(cli)
    assert shown["breaker"] == "open"
    assert shown["next_attempt"] == iso_utc(opened["open_until"])

    requests = server.stats()["requests"]
    refused = repos(cli)  # within the 30 s: fails fast, no request reaches the server
    assert refused.returncode == 4 and "next attempt after" in refused.stderr
    assert server.stats()["requests"] == requests

    plant(cli, open_until=time.time() - 0.5)  # the 30 s have just passed
    done = repos(cli)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] >= 1
    assert server.stats()["requests"] == requests + 1  # exactly one probe, and it was enough
    assert breaker(cli) == CLOSED  # closed, failures 0, the next opening is 30 s again
    assert status(cli)["next_attempt"] is None
    # Server back -> the first success is the first command after the 30 s period: the
    # probe itself (its time is a benchmark's business, not a test's).


def test_a_failed_probe_doubles_the_open_period(cli: Cli, server: RunningServer) -> None:
    open_circuit(cli, server)
    plant(cli, open_until=time.time() - 0.5)
    server.inject("error", count=1, status=500, paths=["/api/repos"])
    probed = time.time()
    failed = repos(cli)  # the probe fails; its retry finds the circuit open again
    assert failed.returncode == 4 and "next attempt after" in failed.stderr
    reopened = breaker(cli)
    assert reopened["circuit"] == "open" and reopened["open_period"] == 60
    assert 60 <= reopened["open_until"] - probed <= 60 + (time.time() - probed)
    shown = status(cli)["next_attempt"]
    assert shown == iso_utc(reopened["open_until"])


def test_login_resets_an_open_circuit_on_the_same_server(cli: Cli, server: RunningServer) -> None:
    open_circuit(cli, server)
    plant(cli, open_period=240.0, open_until=time.time() + 240)  # a long outage's opening
    assert repos(cli).returncode == 4
    done = cli.login(server.url)
    assert done.returncode == 0, done.stderr
    assert breaker(cli) == CLOSED
    assert status(cli)["breaker"] == "closed"
    assert repos(cli).returncode == 0


def test_an_old_state_file_stuck_open_for_years_lets_a_probe_through(
    cli: Cli, server: RunningServer
) -> None:
    assert cli.login(server.url).returncode == 0
    assert repos(cli).returncode == 0  # .state exists
    # As an older cidx-auth left it after `Retry-After: 99999999`: no open_period field.
    plant(cli, circuit="open", failures=5, open_until=time.time() + 99_999_999,
          drop=("open_period",))
    assert "open_period" not in breaker(cli)
    before = time.time()
    shown = status(cli)["next_attempt"]
    assert shown in clock_times(before, time.time())  # the next probe may go now
    done = repos(cli)
    assert done.returncode == 0, done.stderr
    assert breaker(cli) == CLOSED


@pytest.mark.posix
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_probe_stopped_by_a_signal_lets_the_next_command_probe(
    cli: Cli, server: RunningServer, signum: int, code: int
) -> None:
    """Found by the soak: the probe's command was interrupted while the server held its
    answer, and for 90 s every command said another one was probing."""
    open_circuit(cli, server)
    plant(cli, open_until=time.time() - 0.5)  # the next command is the probe
    server.hold("/api/repos", seconds=60)
    probe = subprocess.Popen([*cli_command(cli), "request", "GET", "/api/repos"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli.env, preexec_fn=_default_signals)
    try:
        server.wait_held()
        assert breaker(cli)["probe_until"] is not None  # the probe is out
        probe.send_signal(signum)
        _, err = probe.communicate(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.communicate()
        server.release_held()
    assert probe.returncode == code, err
    assert breaker(cli)["probe_until"] is None
    done = repos(cli)
    assert done.returncode == 0, done.stderr
    assert breaker(cli) == CLOSED


def cli_command(cli: Cli) -> list[str]:
    return [sys.executable, "-m", "cidx_auth", "--project", str(cli.project)]


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even under `cmd &`
